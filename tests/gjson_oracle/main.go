// Command gjson-oracle answers GJSON queries with tidwall/gjson, the library KServe's router
// uses for step conditions. The differential tests in tests/properties start it once and
// stream queries through it: one JSON object per line in, one per line out, in order.
//
// Input line:  {"doc": "<raw JSON text>", "path": "<GJSON path>"}
// Output line: {"exists": bool, "value": <Result.Value()>, "raw": "<Result.Raw>", "type": "..."}
//
// Values JSON cannot carry (NaN, ±Inf) are reported as null with "unencodable": true.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/tidwall/gjson"
)

type query struct {
	Doc  string `json:"doc"`
	Path string `json:"path"`
}

type answer struct {
	Exists      bool   `json:"exists"`
	Value       any    `json:"value"`
	Raw         string `json:"raw"`
	Type        string `json:"type"`
	Unencodable bool   `json:"unencodable,omitempty"`
	Error       string `json:"error,omitempty"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	// Documents can be large; the default 64 KiB line limit would end the stream early.
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	for in.Scan() {
		var q query
		var a answer
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			a.Error = err.Error()
		} else {
			result := gjson.GetBytes([]byte(q.Doc), q.Path)
			a.Exists = result.Exists()
			a.Raw = result.Raw
			a.Type = result.Type.String()
			a.Value = result.Value()
			if _, err := json.Marshal(a.Value); err != nil {
				a.Value = nil
				a.Unencodable = true
			}
		}
		if err := encoder.Encode(a); err != nil {
			fmt.Fprintln(os.Stderr, "gjson-oracle:", err)
			os.Exit(1)
		}
		// The caller waits for each answer before sending the next query.
		if err := out.Flush(); err != nil {
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "gjson-oracle:", err)
		os.Exit(1)
	}
}
