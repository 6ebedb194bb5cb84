"""The controller's only door to the API server: list, watch, server-side apply, status
patches, deletes and the leader Lease, through the official `kubernetes` client.

Requests go through `ApiClient.param_serialize` + `call_api`, so authentication (tokens,
client certificates, in-cluster token refresh) is the client's. Every failure becomes an
`ApiError` carrying the HTTP status (0 for connection errors) and whether a retry may help.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import urllib3
from kubernetes import client
from kubernetes import config as _config
from kubernetes.config.config_exception import ConfigException
from kubernetes.watch import Watch as _Watch

from .resources import FIELD_MANAGER, LEASE, Kind, Object, kind_of

REQUEST_TIMEOUT = 30.0  # seconds for one non-watch call; the API server's own limit is 60 s
LIST_PAGE = 500  # objects per list page, client-go's informer default
APPLY = "application/apply-patch+yaml"  # JSON is YAML, so a JSON body is a valid apply patch
MERGE = "application/merge-patch+json"

# The client's functions carry no complete annotations; treat them as untyped at this boundary.
config: Any = _config
Watch: Any = _Watch


class ApiError(Exception):
    """A failed API call: `status` is the HTTP status, 0 when the server was not reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        # 409: a stale resourceVersion or a racing writer; 429: priority & fairness; 5xx and
        # connection errors: a restarting or overloaded server. Others need a spec change.
        return self.status in (0, 409, 429) or self.status >= 500


class ConfigError(ValueError):
    """No usable kubeconfig / in-cluster configuration."""


def load_configuration(kubeconfig: str | None, pool_size: int) -> Any:
    """--kubeconfig, else $KUBECONFIG / ~/.kube/config, else the in-cluster ServiceAccount."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                config.load_kube_config(client_configuration=configuration)
    except (ConfigException, OSError) as error:
        raise ConfigError(f"no Kubernetes configuration: {error}") from error
    # Each watch holds a connection for minutes; workers need their own on top.
    configuration.connection_pool_maxsize = pool_size
    # One reconnect (a pooled connection the server closed), never a re-sent read: urllib3's
    # default of 3 retries would multiply a stalled call's timeout, and every caller (work
    # queue, informers, leader election) already retries on its own schedule.
    configuration.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, redirect=0)
    return configuration


class Kube:
    def __init__(self, configuration: Any) -> None:
        self._api: Any = client.ApiClient(configuration)

    def close(self) -> None:
        self._api.close()

    # --- transport ---

    def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: Any = REQUEST_TIMEOUT,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # The client JSON-encodes dict bodies for JSON content types; an apply patch (YAML
        # content type) goes as the JSON text itself.
        payload = orjson.dumps(body).decode() if content_type == APPLY else body
        try:
            request = self._api.param_serialize(
                method,
                path,
                query_params=list(query),
                header_params=headers,
                body=payload,
                auth_settings=["BearerToken"],
            )
            answer = self._api.call_api(*request, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, f"{method} {path}: {error}") from error
        except client.ApiException as error:
            # The client raises its own exception for some failures (TLS, a Retry-After it
            # gave up on); a caller must see them as the same ApiError as the rest.
            raise ApiError(error.status or 0, f"{method} {path}: {error.reason}") from error
        return answer

    def _call(self, method: str, path: str, **kwargs: Any) -> Object:
        answer = self._send(method, path, **kwargs)
        try:
            data = answer.read()
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, f"{method} {path}: {error}") from error
        if not 200 <= answer.status < 300:
            raise ApiError(answer.status, f"{method} {path}: {answer.status} {_message(data)}")
        try:
            parsed: Object = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError as error:
            raise ApiError(0, f"{method} {path}: unreadable answer: {error}") from error
        return parsed

    # --- reads ---

    def list(self, kind: Kind, namespace: str | None, selector: str | None) -> Object:
        """Every object (all pages); `metadata.resourceVersion` is where a watch starts."""
        items: list[Object] = []
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", LIST_PAGE)]
            if selector:
                query.append(("labelSelector", selector))
            if token:
                query.append(("continue", token))
            page = self._call("GET", kind.collection_path(namespace), query=query)
            items += page.get("items") or []
            token = page.get("metadata", {}).get("continue") or ""
            if not token:
                page["items"] = items
                return page

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        selector: str | None,
        resource_version: str,
        timeout: int,
    ) -> Iterator[tuple[str, Object, str]]:
        """(type, object, resourceVersion) events from `resource_version` for up to `timeout`
        seconds; raises ApiError(410) when that version is too old (re-list then)."""

        def open_stream(**kwargs: Any) -> Any:
            query = [("watch", "true"), ("allowWatchBookmarks", "true")]
            query += [("resourceVersion", kwargs["resource_version"])]
            query += [("timeoutSeconds", kwargs["timeout_seconds"])]
            if selector:
                query.append(("labelSelector", selector))
            # The read timeout outlasts the server's own (plus a bookmark's interval).
            answer = self._send(
                "GET", kind.collection_path(namespace), query=query, timeout=(10, timeout + 60)
            )
            if not 200 <= answer.status < 300:
                data = answer.read()
                raise ApiError(answer.status, f"watch {kind.plural}: {_message(data)}")
            return answer.response

        stream = Watch(return_type="object")
        try:
            for event in stream.stream(
                open_stream, resource_version=resource_version, timeout_seconds=timeout
            ):
                yield event["type"], event["raw_object"], stream.resource_version or ""
        except client.ApiException as error:
            raise ApiError(error.status or 0, f"watch {kind.plural}: {error.reason}") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, f"watch {kind.plural}: {error}") from error

    # --- writes ---

    def apply(self, manifest: Object) -> Object:
        """Server-side apply as field manager `infergraph`, taking fields from other managers."""
        kind = kind_of(manifest)
        metadata = manifest["metadata"]
        path = kind.object_path(metadata.get("namespace"), metadata["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return self._call("PATCH", path, query=query, body=manifest, content_type=APPLY)

    def patch_status(self, kind: Kind, namespace: str, name: str, status: Object) -> Object:
        """A merge patch on the status subresource (lists such as conditions are replaced)."""
        path = kind.object_path(namespace, name, "status")
        return self._call("PATCH", path, body={"status": status}, content_type=MERGE)

    def create_event(self, event: Object) -> Object:
        """A core/v1 Event in the involved object's namespace."""
        path = f"/api/v1/namespaces/{event['metadata']['namespace']}/events"
        return self._call("POST", path, body=event)

    def delete(self, kind: Kind, namespace: str, name: str, uid: str) -> None:
        """Delete if it is still the object with `uid`; gone already is fine."""
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            "propagationPolicy": "Background",
        }
        try:
            self._call("DELETE", kind.object_path(namespace, name), body=options)
        except ApiError as error:
            if error.status != 404:
                raise

    # --- leader Lease ---

    # Lease calls take the caller's time budget: a renewal must fail within the renew
    # deadline, never hang past the Lease (urllib3's own retries would multiply the wait).

    def get_lease(self, namespace: str, name: str, timeout: float) -> Object | None:
        try:
            return self._call("GET", LEASE.object_path(namespace, name), timeout=_once(timeout))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def create_lease(self, lease: Object, timeout: float) -> Object:
        namespace = lease["metadata"]["namespace"]
        path = LEASE.collection_path(namespace)
        return self._call("POST", path, body=lease, timeout=_once(timeout))

    def update_lease(self, lease: Object, timeout: float) -> Object:
        """A PUT carrying metadata.resourceVersion: 409 when someone else wrote it first."""
        metadata = lease["metadata"]
        path = LEASE.object_path(metadata["namespace"], metadata["name"])
        return self._call("PUT", path, body=lease, timeout=_once(timeout))


def _once(seconds: float) -> float:
    """A whole-call budget (the client makes it urllib3's `total`), at least 0.1 s."""
    return max(0.1, seconds)


def _message(data: bytes | None) -> str:
    """The `message` of a Status body, else the raw body (shortened)."""
    if not data:
        return ""
    try:
        status = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:200].decode(errors="replace")
    if isinstance(status, dict) and "message" in status:
        return str(status["message"])
    return data[:200].decode(errors="replace")
