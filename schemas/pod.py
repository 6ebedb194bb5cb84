"""Kubernetes core types that KServe resources embed, typed only as deep as we read them.

A `Container` is typed (deployers run its command locally or render it); the many other PodSpec
fields pass through as JSON, but their *names* are declared so a typo is still rejected.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from schemas.base import JsonObject, Resource, StrictBool, StrictInt


class EnvVar(Resource):
    name: str
    value: str | None = None
    value_from: JsonObject | None = None


class ContainerPort(Resource):
    container_port: StrictInt
    name: str | None = None
    protocol: str | None = None
    host_port: StrictInt | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")


class Container(Resource):
    name: str | None = None  # required by Kubernetes, but KServe fills it for predictors
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    env_from: list[JsonObject] | None = None
    ports: list[ContainerPort] | None = None
    resources: JsonObject | None = None
    volume_mounts: list[JsonObject] | None = None
    working_dir: str | None = None
    image_pull_policy: str | None = None
    liveness_probe: JsonObject | None = None
    readiness_probe: JsonObject | None = None
    startup_probe: JsonObject | None = None
    security_context: JsonObject | None = None
    lifecycle: JsonObject | None = None
    stdin: StrictBool | None = None
    stdin_once: StrictBool | None = None
    tty: StrictBool | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    volume_devices: list[JsonObject] | None = None
    resize_policy: list[JsonObject] | None = None
    restart_policy: str | None = None


class PodSpecFields(Resource):
    """The PodSpec fields KServe inlines into its component specs (all optional)."""

    containers: list[Container] | None = None
    init_containers: list[Container] | None = None
    volumes: list[JsonObject] | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    affinity: JsonObject | None = None
    tolerations: list[JsonObject] | None = None
    service_account_name: str | None = None
    service_account: str | None = None
    automount_service_account_token: StrictBool | None = None
    image_pull_secrets: list[JsonObject] | None = None
    security_context: JsonObject | None = None
    priority_class_name: str | None = None
    priority: StrictInt | None = None
    scheduler_name: str | None = None
    runtime_class_name: str | None = None
    host_network: StrictBool | None = None
    host_ipc: StrictBool | None = Field(default=None, alias="hostIPC")
    host_pid: StrictBool | None = Field(default=None, alias="hostPID")
    dns_policy: str | None = None
    dns_config: JsonObject | None = None
    hostname: str | None = None
    subdomain: str | None = None
    host_aliases: list[JsonObject] | None = None
    termination_grace_period_seconds: StrictInt | None = None
    active_deadline_seconds: StrictInt | None = None
    topology_spread_constraints: list[JsonObject] | None = None
    restart_policy: str | None = None
    readiness_gates: list[JsonObject] | None = None
    enable_service_links: StrictBool | None = None
    share_process_namespace: StrictBool | None = None
    preemption_policy: str | None = None
    overhead: dict[str, Any] | None = None
    os: JsonObject | None = None
    scheduling_gates: list[JsonObject] | None = None
    resource_claims: list[JsonObject] | None = None
    # Pod-level resources (Kubernetes 1.32); KServe's PodSpec copy has no ephemeralContainers.
    resources: JsonObject | None = None
    set_hostname_as_fqdn: StrictBool | None = Field(default=None, alias="setHostnameAsFQDN")
    host_users: StrictBool | None = None
