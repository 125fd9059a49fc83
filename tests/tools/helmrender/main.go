// helmrender renders a Helm chart the way `helm template` does, for tests on machines
// where Helm cannot be installed: the same template engine (Go's text/template), the
// same function library (Sprig v3, without env/expandenv) and Helm's own functions
// (include, tpl, required, toYaml, fromYaml, lookup), values merged as Helm merges them
// (numbers become float64, as they do through Helm's YAML-to-JSON step).
//
//	helmrender CHART [-f values.yaml]... [--name RELEASE] [--namespace NS] [--notes]
//
// Prints every rendered manifest after "---\n# Source: CHART/templates/FILE"; a template
// error (required, fail) goes to stderr with exit status 1.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yamlv2 "gopkg.in/yaml.v2"
)

// viaJSON reads YAML as Helm does (sigs.k8s.io/yaml): go-yaml v2, so YAML 1.1 scalars
// (on/yes are true), then through JSON, so every number is a float64.
func viaJSON(data []byte) (interface{}, error) {
	var raw interface{}
	if err := yamlv2.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	asJSON, err := json.Marshal(jsonable(raw))
	if err != nil {
		return nil, err
	}
	var out interface{}
	err = json.Unmarshal(asJSON, &out)
	return out, err
}

// jsonable turns go-yaml v2's map[interface{}]interface{} into string-keyed maps.
func jsonable(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, item := range t {
			out[fmt.Sprint(k)] = jsonable(item)
		}
		return out
	case []interface{}:
		for i, item := range t {
			t[i] = jsonable(item)
		}
	}
	return v
}

func readYAML(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := viaJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	out, ok := raw.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a mapping", path)
	}
	return out, nil
}

// merge lays over onto base: mappings merge key by key, anything else replaces, and a
// null removes the key (Helm's coalescing of user values over the chart's).
func merge(base, over map[string]interface{}) map[string]interface{} {
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		if vm, ok := v.(map[string]interface{}); ok {
			if bm, ok := base[k].(map[string]interface{}); ok {
				base[k] = merge(bm, vm)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// toYAML writes as Helm's toYaml does (sigs.k8s.io/yaml): through JSON, then go-yaml v2 —
// two-space indents, list items not indented under their key, keys sorted, round floats
// as integers — so a checksum of a rendered block is the one Helm computes.
func toYAML(v interface{}) string {
	asJSON, err := json.Marshal(jsonable(v))
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := yamlv2.Unmarshal(asJSON, &generic); err != nil {
		return ""
	}
	data, err := yamlv2.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	out := map[string]interface{}{}
	raw, err := viaJSON([]byte(s))
	if err != nil {
		out["Error"] = err.Error()
	} else if m, ok := raw.(map[string]interface{}); ok {
		out = m
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: helmrender CHART [-f values.yaml]... [--name R] [--namespace NS] [--notes]")
		os.Exit(2)
	}
	chartDir := os.Args[1]
	release, namespace, notes := "heshi", "default", false
	var valueFiles []string
	for i := 2; i < len(os.Args); i++ {
		switch os.Args[i] {
		case "-f":
			i++
			valueFiles = append(valueFiles, os.Args[i])
		case "--name":
			i++
			release = os.Args[i]
		case "--namespace":
			i++
			namespace = os.Args[i]
		case "--notes":
			notes = true
		default:
			fmt.Fprintln(os.Stderr, "unknown argument:", os.Args[i])
			os.Exit(2)
		}
	}
	chart, err := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	check(err)
	values, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	check(err)
	for _, f := range valueFiles {
		over, err := readYAML(f)
		check(err)
		values = merge(values, over)
	}
	chartName := fmt.Sprint(chart["name"])
	root := template.New("root")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["lookup"] = func(...interface{}) map[string]interface{} { return map[string]interface{}{} }
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf("%s", msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	templatesDir := filepath.Join(chartDir, "templates")
	entries, err := os.ReadDir(templatesDir)
	check(err)
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		text, err := os.ReadFile(filepath.Join(templatesDir, e.Name()))
		check(err)
		name := chartName + "/templates/" + e.Name()
		_, err = root.New(name).Parse(string(text))
		check(err)
		names = append(names, name)
	}
	sort.Strings(names)
	top := map[string]interface{}{
		"Values": values,
		"Chart": map[string]interface{}{
			"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"],
		},
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true,
			"IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "Major": "1", "Minor": "30"},
		},
	}
	var out bytes.Buffer
	for _, name := range names {
		base := filepath.Base(name)
		if strings.HasPrefix(base, "_") || (base == "NOTES.txt") != notes {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			os.Exit(1)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		if notes {
			out.WriteString(text)
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimSpace(text))
	}
	os.Stdout.Write(out.Bytes())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
