package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"gopkg.in/yaml.v3"
)

// Conformance with Istio's own validation data (shared/conformance/istio,
// see its MANIFEST.txt): every document Istio accepts must be accepted with
// no error, and every document Istio rejects must be rejected for the right
// reason. Our wording differs from the kube-apiserver's and the webhook's,
// so testdata/istio-datasets.yaml maps each rejected document to the field
// and message Garrison reports, with Istio's own message beside it.

// istioConformanceDir is shared/conformance/istio, relative to this package.
const istioConformanceDir = "../../shared/conformance/istio"

// istioDatasetExpectations is testdata/istio-datasets.yaml.
type istioDatasetExpectations struct {
	Rejected []istioDatasetRejection `yaml:"rejected"`
}

// istioDatasetRejection is one document Garrison rejects, and exactly the
// errors it reports for it.
type istioDatasetRejection struct {
	// File is relative to shared/conformance/istio; Doc counts the file's
	// non-empty documents from 0.
	File string `yaml:"file"`
	Doc  int    `yaml:"doc"`
	// Istio is the message Istio expects (the document's _err key), kept
	// for reference and checked against the data so the two stay in step.
	Istio string `yaml:"istio,omitempty"`
	// Reason is required when Istio accepts the document: why Garrison
	// does not.
	Reason string            `yaml:"reason,omitempty"`
	Errors []expectedProblem `yaml:"errors"`
}

func (r istioDatasetRejection) key() string { return fmt.Sprintf("%s#%d", r.File, r.Doc) }

// istioCorpus is a set of files of the conformance directory and whether
// Istio accepts them.
type istioCorpus struct {
	dir string
	// include selects files by base name.
	include func(name string) bool
	// invalid says whether Istio rejects every document of the file.
	invalid func(name string) bool
}

func istioNever(string) bool { return false }

var istioCorpora = []istioCorpus{
	// Galley's validation dataset of Istio 1.5: the retired kinds included.
	{
		dir:     "istio@1.5.0/galley/testdatasets/validation/dataset",
		include: func(string) bool { return true },
		invalid: func(n string) bool { return strings.HasSuffix(n, "-invalid.yaml") },
	},
	// The CRD (OpenAPI schema + CEL) tests of Istio HEAD; invalid documents
	// carry Istio's expected message in a top-level _err key.
	{
		dir:     "istio@HEAD/pkg/config/validation/testdata/crds",
		include: func(string) bool { return true },
		invalid: func(n string) bool { return strings.HasSuffix(n, "-invalid.yaml") },
	},
	// The webhook's dataset of Istio HEAD: all valid.
	{
		dir:     "istio@HEAD/pkg/test/datasets/validation/dataset",
		include: func(string) bool { return true },
		invalid: istioNever,
	},
	// Inputs of the AuthorizationPolicy -> Envoy RBAC builder golden tests.
	{dir: "istio@HEAD/pilot/pkg/security/authz/builder/testdata/http", include: istioIsBuilderInput, invalid: istioNever},
	{dir: "istio@HEAD/pilot/pkg/security/authz/builder/testdata/tcp", include: istioIsBuilderInput, invalid: istioNever},
	{dir: "istio@1.5.0/pilot/pkg/security/authz/builder/testdata/v1beta1", include: istioIsBuilderInput, invalid: istioNever},
	{dir: "istio@1.5.0/pilot/pkg/security/authz/builder/testdata/v1alpha1", include: istioIsBuilderInput, invalid: istioNever},
	{dir: "istio@1.4.0/pilot/pkg/security/authz/builder/testdata/v1alpha1", include: istioIsBuilderInput, invalid: istioNever},
	// The istioctl v1alpha1 -> v1beta1 converter: inputs, expected outputs
	// (-want, .golden) and the Services it reads. Its error-* inputs are
	// conversion errors, not validation errors, so they must be accepted
	// too.
	{dir: "istio@1.5.0/istioctl/cmd/testdata/authz/converter", include: istioIsYAML, invalid: istioNever},
	{dir: "istio@1.4.0/istioctl/cmd/testdata/authz/converter", include: istioIsYAML, invalid: istioNever},
}

func istioIsYAML(name string) bool { return strings.HasSuffix(name, ".yaml") }

func istioIsBuilderInput(name string) bool { return strings.HasSuffix(name, "-in.yaml") }

// istioDocument is one non-empty document of a conformance file.
type istioDocument struct {
	index int
	// data is the document re-encoded without its _err key.
	data []byte
	// istioErr is the _err key's value, Istio's expected message.
	istioErr string
}

// splitIstioDocuments reads every non-empty document of data, strips the
// _err key and re-encodes it.
func splitIstioDocuments(data []byte) ([]istioDocument, error) {
	var out []istioDocument
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(doc.Content) == 0 || isNull(deref(doc.Content[0])) {
			continue
		}
		d := istioDocument{index: len(out)}
		if root := doc.Content[0]; root.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(root.Content); i += 2 {
				if root.Content[i].Value == "_err" {
					d.istioErr = root.Content[i+1].Value
					root.Content = slices.Delete(root.Content, i, i+2)
					break
				}
			}
		}
		if d.data, err = yaml.Marshal(&doc); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
}

func loadIstioDatasetExpectations(t *testing.T) map[string]istioDatasetRejection {
	t.Helper()
	data, err := os.ReadFile("testdata/istio-datasets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var exp istioDatasetExpectations
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&exp); err != nil {
		t.Fatalf("testdata/istio-datasets.yaml: %v", err)
	}
	out := map[string]istioDatasetRejection{}
	for _, r := range exp.Rejected {
		if _, dup := out[r.key()]; dup {
			t.Fatalf("testdata/istio-datasets.yaml: %s doc %d is listed twice", r.File, r.Doc)
		}
		if len(r.Errors) == 0 {
			t.Fatalf("testdata/istio-datasets.yaml: %s doc %d lists no errors", r.File, r.Doc)
		}
		out[r.key()] = r
	}
	return out
}

func TestIstioDatasets(t *testing.T) {
	t.Parallel()
	if st, err := os.Stat(istioConformanceDir); err != nil || !st.IsDir() {
		t.Fatalf("Istio conformance data not found at %s (shared/conformance/istio beside the repository): %v", istioConformanceDir, err)
	}
	expectations := loadIstioDatasetExpectations(t)
	var used sync.Map
	var accepted, rejected, rejectedValid atomic.Int64

	t.Run("corpus", func(t *testing.T) {
		for _, corpus := range istioCorpora {
			entries, err := os.ReadDir(filepath.Join(istioConformanceDir, corpus.dir))
			if err != nil {
				t.Fatalf("%s: %v", corpus.dir, err)
			}
			n := 0
			for _, e := range entries {
				if e.IsDir() || !corpus.include(e.Name()) {
					continue
				}
				n++
				rel := corpus.dir + "/" + e.Name()
				invalid := corpus.invalid(e.Name())
				t.Run(rel, func(t *testing.T) {
					t.Parallel()
					data, err := os.ReadFile(filepath.Join(istioConformanceDir, rel))
					if err != nil {
						t.Fatal(err)
					}
					docs, err := splitIstioDocuments(data)
					if err != nil {
						t.Fatalf("reading documents: %v", err)
					}
					if len(docs) == 0 && invalid {
						t.Fatalf("an invalid dataset with no document")
					}
					for _, doc := range docs {
						t.Run(fmt.Sprintf("doc%d", doc.index), func(t *testing.T) {
							t.Parallel()
							_, problems := Parse(rel, doc.data)
							errs := problems.Errors()
							key := fmt.Sprintf("%s#%d", rel, doc.index)
							exp, listed := expectations[key]
							if listed {
								used.Store(key, true)
							}
							switch {
							case !listed && !invalid:
								if len(errs) > 0 {
									t.Errorf("Istio accepts this document; Garrison rejects it:\n%v\n%s", errs, doc.data)
									return
								}
								accepted.Add(1)
							case !listed:
								t.Errorf("Istio rejects this document (%q) but testdata/istio-datasets.yaml has no entry for it; Garrison reports:\n%s\n%s",
									doc.istioErr, describeForExpectations(rel, doc, errs), doc.data)
							default:
								if !invalid && exp.Reason == "" {
									t.Errorf("Istio accepts this document: its entry in testdata/istio-datasets.yaml needs a reason")
								}
								if exp.Istio != doc.istioErr {
									t.Errorf("istio: %q in testdata/istio-datasets.yaml, but the document's _err is %q", exp.Istio, doc.istioErr)
								}
								matchProblems(t, "error", exp.Errors, errs)
								if t.Failed() {
									t.Logf("Garrison reports:\n%s", describeForExpectations(rel, doc, errs))
									return
								}
								if invalid {
									rejected.Add(1)
								} else {
									rejectedValid.Add(1)
								}
							}
						})
					}
				})
			}
			if n == 0 {
				t.Errorf("%s: no file selected", corpus.dir)
			}
		}
	})

	for key := range expectations {
		if _, ok := used.Load(key); !ok {
			t.Errorf("testdata/istio-datasets.yaml: %s matches no document of the corpus", key)
		}
	}
	t.Logf("Istio datasets: %d documents Istio accepts accepted; %d documents Istio rejects rejected for the listed reason; %d documents Istio accepts rejected on purpose",
		accepted.Load(), rejected.Load(), rejectedValid.Load())
}

// describeForExpectations renders errs as an entry of
// testdata/istio-datasets.yaml, to help write one.
func describeForExpectations(rel string, doc istioDocument, errs Problems) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- file: %s\n  doc: %d\n", rel, doc.index)
	if doc.istioErr != "" {
		fmt.Fprintf(&b, "  istio: %q\n", doc.istioErr)
	}
	b.WriteString("  errors:\n")
	for _, e := range errs {
		fmt.Fprintf(&b, "  - field: %s\n    message: %q\n", e.Field, e.Message)
	}
	return b.String()
}
