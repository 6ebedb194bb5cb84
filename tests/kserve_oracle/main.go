// Command kserve-oracle decodes Kubernetes objects with KServe's own Go API types and encodes
// them again: what KServe's controller would read and write back. The differential tests in
// tests/properties stream objects through it, one JSON object per line in, one out, in order.
//
// Input line:  {"object": {...}}  (apiVersion and kind pick the Go type)
// Output line: {"object": {...}} after a strict decode (unknown fields are an error) and an
// encode, or {"error": "..."} when KServe's types refuse it.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/kserve/kserve/pkg/apis/serving/v1alpha1"
	"github.com/kserve/kserve/pkg/apis/serving/v1beta1"
)

type request struct {
	Object json.RawMessage `json:"object"`
}

type reply struct {
	Object any    `json:"object,omitempty"`
	Error  string `json:"error,omitempty"`
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// target is a fresh Go value of the type KServe decodes this apiVersion/kind into.
func target(meta typeMeta) (any, error) {
	switch meta.APIVersion + " " + meta.Kind {
	case "serving.kserve.io/v1beta1 InferenceService":
		return &v1beta1.InferenceService{}, nil
	case "serving.kserve.io/v1alpha1 InferenceGraph":
		return &v1alpha1.InferenceGraph{}, nil
	case "serving.kserve.io/v1alpha1 ServingRuntime":
		return &v1alpha1.ServingRuntime{}, nil
	case "serving.kserve.io/v1alpha1 ClusterServingRuntime":
		return &v1alpha1.ClusterServingRuntime{}, nil
	}
	return nil, fmt.Errorf("no KServe type for apiVersion %q kind %q", meta.APIVersion, meta.Kind)
}

func roundTrip(raw json.RawMessage) (any, error) {
	var meta typeMeta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, err
	}
	value, err := target(meta)
	if err != nil {
		return nil, err
	}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(value); err != nil {
		return nil, err
	}
	encoded, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(encoded, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	// Objects with whole PodSpecs are large; the default 64 KiB line limit would end the stream.
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	for in.Scan() {
		var r request
		var a reply
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			a.Error = err.Error()
		} else if object, err := roundTrip(r.Object); err != nil {
			a.Error = err.Error()
		} else {
			a.Object = object
		}
		if err := encoder.Encode(a); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := out.Flush(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
