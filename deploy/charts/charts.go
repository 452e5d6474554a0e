// Package charts holds relay-pki's Helm chart (relay-pki/) and renders it
// with Helm's Go SDK, as `helm template` would, for the chart's own tests and
// for the e2e suite, which applies the chart's RBAC to a real apiserver. The
// relay-pki binary does not import it, so Helm stays out of it.
package charts

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The all: prefix keeps _helpers.tpl, which embed would otherwise skip.
//
//go:embed all:relay-pki
var chartFS embed.FS

// Name is the chart's folder and name.
const Name = "relay-pki"

// Release names where a chart is installed.
type Release struct {
	Name, Namespace string
}

// Render renders the chart with values (merged over values.yaml) and
// returns each template's output by file name, as `helm template` prints
// them.
func Render(rel Release, values map[string]any) (map[string]string, error) {
	var files []*archive.BufferedFile
	err := fs.WalkDir(chartFS, Name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := chartFS.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(p, Name+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the embedded chart: %w", err)
	}
	chrt, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", Name, err)
	}
	vals, err := chartutil.ToRenderValues(chrt, values, common.ReleaseOptions{Name: rel.Name, Namespace: rel.Namespace, IsInstall: true, Revision: 1}, nil)
	if err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	out, err := engine.Render(chrt, vals)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", Name, err)
	}
	return out, nil
}

// Objects renders the chart and decodes every manifest, in template file
// order and document order within a file (NOTES.txt and empty documents
// are left out).
func Objects(rel Release, values map[string]any) ([]*unstructured.Unstructured, error) {
	rendered, err := Render(rel, values)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		if path.Ext(n) == ".yaml" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	for _, n := range names {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(rendered[n])), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			if len(m) == 0 {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs, nil
}
