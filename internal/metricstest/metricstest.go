// Package metricstest reads the operations listener's /metrics in tests
// (ops' own, and integration's against the real binary): fetched with
// net/http and parsed with expfmt, as Prometheus parses it.
package metricstest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Get fetches url and returns the status code and body.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Metrics is one parsed scrape of /metrics, by family name.
type Metrics map[string]*dto.MetricFamily

// Scrape fetches and parses base+"/metrics".
func Scrape(t testing.TB, base string) Metrics {
	t.Helper()
	code, body := Get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return mf
}

// Value returns the value of the first series of family name that carries
// the labels (name, value pairs): a gauge's or counter's value, a
// histogram's count; ok is false if there is none.
func (m Metrics) Value(name string, labels ...string) (v float64, ok bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
next:
	for _, s := range f.Metric {
		have := map[string]string{}
		for _, l := range s.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// Want reports an error on t unless the series of family name with the
// labels is there with the value v.
func (m Metrics) Want(t testing.TB, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := m.Value(name, labels...)
	if !ok {
		t.Errorf("%s%q: missing", name, labels)
	} else if got != v {
		t.Errorf("%s%q = %v, want %v", name, labels, got, v)
	}
}
