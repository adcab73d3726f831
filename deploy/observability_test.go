package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// These tests check the Prometheus rules and the Grafana dashboard with
// promtool, Prometheus's own tool, and against the metrics that a running
// service exports. NOTE: no Prometheus server or Grafana runs here, so the
// dashboard's import into Grafana and its panel layout are not tested.

const (
	rulesPath     = "prometheus/dicomweb-oauth.rules.yaml"
	rulesTestPath = "prometheus/dicomweb-oauth.rules.test.yaml"
	dashboardPath = "grafana/dicomweb-oauth.json"
	operationsDoc = "../docs/operations.md"
)

// requirePromtool returns the path of promtool. It skips the test when
// promtool is missing, but fails it in CI, where e2e/install-deps.sh
// installs Debian's prometheus package, which contains promtool.
func requirePromtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("promtool is missing in CI: %v", err)
	}
	t.Skipf("promtool is missing; run e2e/install-deps.sh, which installs the prometheus package: %v", err)
	return ""
}

// runPromtool runs promtool and returns its combined output. The error is
// non-nil when promtool exits with a non-zero code.
func runPromtool(promtool string, args ...string) (string, error) {
	cmd := exec.Command(promtool, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("promtool %s failed: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// alertRuleFile is a Prometheus rule file.
type alertRuleFile struct {
	Groups []struct {
		Name     string      `yaml:"name"`
		Interval string      `yaml:"interval"`
		Rules    []alertRule `yaml:"rules"`
	} `yaml:"groups"`
}

type alertRule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// ruleTestFile declares the keys of a promtool test file that
// dicomweb-oauth.rules.test.yaml uses.
type ruleTestFile struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Name        string `yaml:"name"`
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func loadAlertRules(t *testing.T, path string) []alertRule {
	t.Helper()
	var file alertRuleFile
	if err := decodeKnownFields(readFile(t, path), &file); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var rules []alertRule
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rule", path)
	}
	return rules
}

// copyToTemp copies files into a new temporary folder under their base
// names and returns the folder.
func copyToTemp(t *testing.T, paths ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, path := range paths {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), readFile(t, path), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// replaceInFile replaces the first old in a file with new and fails the
// test when old is not in it.
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	text := string(readFile(t, path))
	if !strings.Contains(text, old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(text, old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAlertRulesPromtool(t *testing.T) {
	promtool := requirePromtool(t)

	if out, err := runPromtool(promtool, "check", "rules", rulesPath); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
	if out, err := runPromtool(promtool, "test", "rules", rulesTestPath); err != nil {
		t.Errorf("%v\n%s", err, out)
	}

	t.Run("check rules rejects a broken expression", func(t *testing.T) {
		dir := copyToTemp(t, rulesPath)
		broken := filepath.Join(dir, filepath.Base(rulesPath))
		replaceInFile(t, broken, "dicomweb_oauth_token_valid == 0", "dicomweb_oauth_token_valid ==")
		if out, err := runPromtool(promtool, "check", "rules", broken); err == nil {
			t.Errorf("promtool check rules accepts an expression that ends in ==:\n%s", out)
		}
	})
	t.Run("test rules rejects a changed for", func(t *testing.T) {
		dir := copyToTemp(t, rulesPath, rulesTestPath)
		replaceInFile(t, filepath.Join(dir, filepath.Base(rulesPath)),
			"expr: dicomweb_oauth_token_valid == 0\n        for: 2m", "expr: dicomweb_oauth_token_valid == 0\n        for: 1m")
		out, err := runPromtool(promtool, "test", "rules", filepath.Join(dir, filepath.Base(rulesTestPath)))
		if err == nil {
			t.Errorf("promtool test rules passes although DicomwebOAuthNoValidToken fires a minute early:\n%s", out)
		}
	})
}

// TestAlertRulesAnnotations checks what promtool does not: that every alert
// has a severity, a summary, a description and a runbook section, and that
// the test file makes it fire and not fire.
func TestAlertRulesAnnotations(t *testing.T) {
	rules := loadAlertRules(t, rulesPath)
	anchors := markdownAnchors(string(readFile(t, operationsDoc)))

	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("%s: rule %q is not an alert; keep recording rules in another file", rulesPath, r.Record)
			continue
		}
		if r.For == "" {
			t.Errorf("%s: %s has no for", rulesPath, r.Alert)
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: %s has severity %q, expected critical or warning", rulesPath, r.Alert, s)
		}
		for _, key := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[key]) == "" {
				t.Errorf("%s: %s has no %s annotation", rulesPath, r.Alert, key)
			}
		}
		anchor, ok := strings.CutPrefix(r.Annotations["runbook"], "docs/operations.md#")
		if !ok {
			t.Errorf("%s: %s: runbook %q must be docs/operations.md#ANCHOR", rulesPath, r.Alert, r.Annotations["runbook"])
		} else if !anchors[anchor] {
			t.Errorf("%s: %s: docs/operations.md has no heading with anchor #%s", rulesPath, r.Alert, anchor)
		}
	}

	firing, silent := alertTestCases(t)
	for _, r := range rules {
		if !firing[r.Alert] {
			t.Errorf("%s has no test case in which %s fires", rulesTestPath, r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("%s has no test case in which %s does not fire", rulesTestPath, r.Alert)
		}
	}
}

// alertTestCases returns the alerts that the promtool test file expects to
// fire in some case, and those it expects to stay silent in some case.
func alertTestCases(t *testing.T) (firing, silent map[string]bool) {
	t.Helper()
	var file ruleTestFile
	if err := decodeKnownFields(readFile(t, rulesTestPath), &file); err != nil {
		t.Fatalf("%s: %v", rulesTestPath, err)
	}
	firing, silent = map[string]bool{}, map[string]bool{}
	for _, test := range file.Tests {
		for _, c := range test.AlertRuleTests {
			if len(c.ExpAlerts) > 0 {
				firing[c.Alertname] = true
			} else {
				silent[c.Alertname] = true
			}
		}
	}
	return firing, silent
}

var markdownHeading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)

// markdownAnchors returns the anchors that GitHub gives a page's headings:
// lower case, punctuation other than - and _ removed, spaces as hyphens.
// Repeated headings, which GitHub numbers, are not handled.
func markdownAnchors(page string) map[string]bool {
	anchors := map[string]bool{}
	for _, m := range markdownHeading.FindAllStringSubmatch(page, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}

// dashboard declares the parts of a Grafana dashboard that the tests read.
type dashboard struct {
	Title         string           `json:"title"`
	UID           string           `json:"uid"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
	Templating    struct {
		List []templateVariable `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *datasourceRef   `json:"datasource"`
	Targets    []panelTarget    `json:"targets"`
	Panels     []dashboardPanel `json:"panels"` // the panels of a collapsed row
}

type panelTarget struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// templateVariable is a dashboard variable. Query is a string in older
// dashboards and an object with a query field in newer ones.
type templateVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
	AllValue   string          `json:"allValue"`
}

// queryText returns the variable's query as text.
func (v templateVariable) queryText() (string, error) {
	if len(v.Query) == 0 {
		return "", nil
	}
	var text string
	if err := json.Unmarshal(v.Query, &text); err == nil {
		return text, nil
	}
	var object struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &object); err != nil {
		return "", fmt.Errorf("variable %s: query is neither a string nor an object with a query: %w", v.Name, err)
	}
	return object.Query, nil
}

func loadDashboard(t *testing.T, data []byte) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	return d
}

// allPanels returns the dashboard's panels with those inside collapsed rows.
func (d dashboard) allPanels() []dashboardPanel {
	var out []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

func (d dashboard) variable(name string) (templateVariable, bool) {
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v, true
		}
	}
	return templateVariable{}, false
}

func TestDashboardStructure(t *testing.T) {
	raw := readFile(t, dashboardPath)
	d := loadDashboard(t, raw)

	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion is %d, expected 39 or later", d.SchemaVersion)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("the dashboard needs a title and a uid; title %q, uid %q", d.Title, d.UID)
	}

	ds, ok := d.variable("datasource")
	if query, err := ds.queryText(); !ok || ds.Type != "datasource" || err != nil || query != "prometheus" {
		t.Errorf("the dashboard needs a variable datasource of type datasource with query prometheus; found %+v", ds)
	}
	cluster, ok := d.variable("cluster")
	if !ok {
		t.Fatal("the dashboard has no variable cluster")
	}
	if q, err := cluster.queryText(); err != nil || q != "label_values(dicomweb_oauth_token_valid, cluster)" {
		t.Errorf("variable cluster: query %q (%v), expected label_values(dicomweb_oauth_token_valid, cluster)", q, err)
	}

	ids := map[int]string{}
	for _, p := range d.allPanels() {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q (id %d) has no query", p.Title, p.ID)
		}
	}

	for _, ref := range datasourceRefs(t, raw) {
		if ref.UID != "${datasource}" {
			t.Errorf("a datasource reference has uid %q; use ${datasource}, so the dashboard imports into any Grafana", ref.UID)
		}
	}
}

// datasourceRefs returns every object under a "datasource" key in the
// dashboard JSON, wherever it is.
func datasourceRefs(t *testing.T, raw []byte) []datasourceRef {
	t.Helper()
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	var refs []datasourceRef
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for key, child := range v {
				if ref, ok := child.(map[string]any); ok && key == "datasource" {
					uid, _ := ref["uid"].(string)
					typ, _ := ref["type"].(string)
					refs = append(refs, datasourceRef{Type: typ, UID: uid})
				}
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(doc)
	return refs
}

// promExpr is a PromQL expression and the place it comes from. For a
// dashboard, raw has the Grafana variables and expr has them replaced by
// values, or is empty when a variable has no value.
type promExpr struct {
	source string
	raw    string
	expr   string
}

var (
	grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?:[:.][^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)`)
	labelValuesCall = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$`)
	queryResultCall = regexp.MustCompile(`^\s*query_result\(\s*(.+)\s*\)\s*$`)
	// Grafana's other Prometheus variable functions have no PromQL inside.
	nonPromQLVariable = regexp.MustCompile(`^\s*(label_values\(\s*\w+\s*\)|label_names\(|metrics\()`)
)

// grafanaBuiltins are values that Grafana's built-in variables could take
// on a dashboard that shows 6 hours of data scraped every minute.
var grafanaBuiltins = map[string]string{
	"__interval":         "1m",
	"__interval_ms":      "60000",
	"__rate_interval":    "4m",
	"__rate_interval_ms": "240000",
	"__range":            "6h",
	"__range_s":          "21600",
	"__range_ms":         "21600000",
	"__from":             "1700000000000",
	"__to":               "1700021600000",
}

// sampleVariableValues are values for the dashboard's own variables. Any
// other variable that the dashboard defines gets "sample".
var sampleVariableValues = map[string]string{
	"cluster":  "pacs",
	"instance": "127.0.0.1:9901",
}

// substituteVariables replaces Grafana variables in expr with values that
// Grafana could give them. A variable that is neither built in nor in
// defined is an error.
func substituteVariables(expr string, defined map[string]bool) (string, error) {
	var errs []error
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(match string) string {
		m := grafanaVariable.FindStringSubmatch(match)
		name := m[1] + m[2] + m[3]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		if !defined[name] {
			errs = append(errs, fmt.Errorf("uses variable $%s, which the dashboard does not define", name))
			return match
		}
		if v, ok := sampleVariableValues[name]; ok {
			return v
		}
		return "sample"
	})
	return out, errors.Join(errs...)
}

// dashboardExpressions returns the PromQL of every panel target and of
// every query variable, with Grafana variables replaced by values.
func dashboardExpressions(d dashboard) ([]promExpr, []string) {
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}

	var exprs []promExpr
	var problems []string
	add := func(source, raw string) {
		substituted, err := substituteVariables(raw, defined)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", source, err))
			substituted = ""
		}
		exprs = append(exprs, promExpr{source: source, raw: raw, expr: substituted})
	}

	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		query, err := v.queryText()
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		source := fmt.Sprintf("variable %s", v.Name)
		switch {
		case labelValuesCall.MatchString(query):
			add(source, labelValuesCall.FindStringSubmatch(query)[1])
		case queryResultCall.MatchString(query):
			add(source, queryResultCall.FindStringSubmatch(query)[1])
		case nonPromQLVariable.MatchString(query):
		default:
			add(source, query)
		}
	}

	for _, p := range d.allPanels() {
		for _, target := range p.Targets {
			if strings.TrimSpace(target.Expr) == "" {
				problems = append(problems, fmt.Sprintf("panel %q (id %d), target %s has no expr", p.Title, p.ID, target.RefID))
				continue
			}
			add(fmt.Sprintf("panel %q (id %d), target %s", p.Title, p.ID, target.RefID), target.Expr)
		}
	}
	return exprs, problems
}

// ruleExpressions returns the expression of every rule in a rule file.
func ruleExpressions(t *testing.T, path string) []promExpr {
	t.Helper()
	var exprs []promExpr
	for _, r := range loadAlertRules(t, path) {
		name := r.Alert
		if name == "" {
			name = r.Record
		}
		exprs = append(exprs, promExpr{source: "rule " + name, raw: r.Expr, expr: r.Expr})
	}
	return exprs
}

// shippedExpressions returns the PromQL of the dashboard and of the rules,
// and the problems found while extracting it.
func shippedExpressions(t *testing.T) ([]promExpr, []string) {
	t.Helper()
	exprs, problems := dashboardExpressions(loadDashboard(t, readFile(t, dashboardPath)))
	if len(exprs) == 0 {
		t.Fatalf("%s has no PromQL expression", dashboardPath)
	}
	return append(exprs, ruleExpressions(t, rulesPath)...), problems
}

var promtoolGroupError = regexp.MustCompile(`group ("(?:[^"\\]|\\.)*"), rule \d+, "[^"]*": (.+)`)

// parseExpressions writes each expression as a recording rule in a group
// named after its source, runs promtool check rules on them, and returns
// one problem per expression that Prometheus's parser rejects.
func parseExpressions(t *testing.T, promtool string, exprs []promExpr) []string {
	t.Helper()
	type recordingRule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type ruleGroup struct {
		Name  string          `yaml:"name"`
		Rules []recordingRule `yaml:"rules"`
	}
	var file struct {
		Groups []ruleGroup `yaml:"groups"`
	}
	bySource := map[string]string{}
	for i, e := range exprs {
		if e.expr == "" {
			continue
		}
		file.Groups = append(file.Groups, ruleGroup{
			Name:  e.source,
			Rules: []recordingRule{{Record: fmt.Sprintf("dicomweb_oauth_check:expr_%d", i), Expr: e.expr}},
		})
		bySource[e.source] = e.expr
	}
	data, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "expressions.rules.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := runPromtool(promtool, "check", "rules", "--lint=none", path)
	if err == nil {
		return nil
	}
	var problems []string
	for _, m := range promtoolGroupError.FindAllStringSubmatch(out, -1) {
		source, unquoteErr := strconv.Unquote(m[1])
		if unquoteErr != nil {
			source = m[1]
		}
		problems = append(problems, fmt.Sprintf("%s: %s\n  expression: %s", source, m[2], bySource[source]))
	}
	if len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("%v\n%s", err, out))
	}
	return problems
}

func TestObservabilityExpressionsParse(t *testing.T) {
	promtool := requirePromtool(t)
	exprs, problems := shippedExpressions(t)
	for _, p := range problems {
		t.Errorf("%s: %s", dashboardPath, p)
	}
	for _, p := range parseExpressions(t, promtool, exprs) {
		t.Error(p)
	}

	t.Run("a broken panel expression names the panel", func(t *testing.T) {
		const selector = `dicomweb_oauth_token_valid{cluster=~\"$cluster\", instance=~\"$instance\"}`
		raw := string(readFile(t, dashboardPath))
		if !strings.Contains(raw, selector) {
			t.Fatalf("%s does not contain %s", dashboardPath, selector)
		}
		raw = strings.Replace(raw, selector, strings.TrimSuffix(selector, "}"), 1)
		broken, problems := dashboardExpressions(loadDashboard(t, []byte(raw)))
		if len(problems) > 0 {
			t.Fatalf("extracting the expressions failed: %v", problems)
		}
		found := parseExpressions(t, promtool, broken)
		if len(found) != 1 || !strings.Contains(found[0], `panel "Token valid"`) {
			t.Errorf("expected one problem naming panel \"Token valid\", found %d: %q", len(found), found)
		}
	})
	t.Run("an undefined variable is reported", func(t *testing.T) {
		_, err := substituteVariables(`up{cluster=~"$clusters"}`, map[string]bool{"cluster": true})
		if err == nil {
			t.Error("substituteVariables accepts $clusters, which is not defined")
		}
	})
}

// exportedMetrics is what one scrape of the service's /metrics contains.
type exportedMetrics struct {
	// families maps a metric family name to its type, from the # TYPE lines.
	families map[string]string
	// labels maps a sample name, such as a histogram's NAME_bucket, to the
	// label names seen on its samples.
	labels map[string]map[string]bool
}

var (
	exposedType   = regexp.MustCompile(`^# TYPE (\S+) (\S+)$`)
	exposedSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	exposedLabel  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
)

// parseExposition reads the Prometheus text format.
func parseExposition(text string) exportedMetrics {
	m := exportedMetrics{families: map[string]string{}, labels: map[string]map[string]bool{}}
	for _, line := range strings.Split(text, "\n") {
		if t := exposedType.FindStringSubmatch(line); t != nil {
			m.families[t[1]] = t[2]
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		s := exposedSample.FindStringSubmatch(line)
		if s == nil {
			continue
		}
		names := m.labels[s[1]]
		if names == nil {
			names = map[string]bool{}
			m.labels[s[1]] = names
		}
		for _, l := range exposedLabel.FindAllStringSubmatch(s[2], -1) {
			names[l[1]] = true
		}
	}
	return m
}

// exports reports whether name is an exported family, or a sample name of
// an exported histogram or summary family.
func (m exportedMetrics) exports(name string) bool {
	if _, ok := m.families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if !found {
			continue
		}
		switch m.families[base] {
		case "histogram":
			return true
		case "summary":
			return suffix != "_bucket"
		}
	}
	return false
}

var (
	serviceMetricName = regexp.MustCompile(`\bdicomweb_oauth_[a-zA-Z0-9_]*`)
	metricSelector    = regexp.MustCompile(`\b(dicomweb_oauth_[a-zA-Z0-9_]*)\s*\{([^}]*)\}`)
	matcherLabel      = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	quotedString      = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// targetLabels are the labels that Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// metricProblems returns a problem for each dicomweb_oauth_* name in exprs
// that the service does not export, and for each label matcher on such a
// metric that names a label the metric does not have. Labels in by and
// without clauses are not checked.
func metricProblems(exprs []promExpr, exported exportedMetrics) []string {
	var problems []string
	for _, e := range exprs {
		for _, name := range serviceMetricName.FindAllString(e.raw, -1) {
			if !exported.exports(name) {
				problems = append(problems, fmt.Sprintf("%s: the service exports no metric %s", e.source, name))
			}
		}
		for _, sel := range metricSelector.FindAllStringSubmatch(e.raw, -1) {
			have, ok := exported.labels[sel[1]]
			if !ok {
				continue
			}
			// Drop the values first, so that an = inside one is not read
			// as a matcher.
			matchers := quotedString.ReplaceAllString(sel[2], `""`)
			for _, l := range matcherLabel.FindAllStringSubmatch(matchers, -1) {
				if !have[l[1]] && !slices.Contains(targetLabels, l[1]) {
					problems = append(problems, fmt.Sprintf("%s: %s has no label %s; its labels are %v",
						e.source, sel[1], l[1], sortedKeys(have)))
				}
			}
		}
	}
	return problems
}

func sortedKeys(set map[string]bool) []string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestObservabilityMetricsExported(t *testing.T) {
	// TestObservabilityExpressionsParse reports the extraction problems.
	exprs, _ := shippedExpressions(t)
	exported := parseExposition(scrapeService(t))
	if len(exported.families) == 0 {
		t.Fatal("/metrics has no # TYPE line")
	}
	for _, p := range metricProblems(exprs, exported) {
		t.Error(p)
	}

	t.Run("an unknown name is reported", func(t *testing.T) {
		renamed := []promExpr{{source: "renamed", raw: `sum(rate(dicomweb_oauth_token_acquisition_total[5m]))`}}
		if problems := metricProblems(renamed, exported); len(problems) != 1 {
			t.Errorf("expected one problem for dicomweb_oauth_token_acquisition_total, found %q", problems)
		}
	})
	t.Run("an unknown label is reported", func(t *testing.T) {
		wrong := []promExpr{{source: "wrong label", raw: `dicomweb_oauth_decision_duration_seconds_bucket{cluster="$cluster"}`}}
		if problems := metricProblems(wrong, exported); len(problems) != 1 {
			t.Errorf("expected one problem for the cluster label of the decision histogram, found %q", problems)
		}
	})
}

// lockedBuffer is an io.Writer that a test can read while a process
// writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serviceWait bounds each wait for the service. It only keeps a broken
// service from hanging the test run.
const serviceWait = 30 * time.Second

// loopbackClient sends requests without any proxy, so they reach the
// service's loopback listeners.
var loopbackClient = &http.Client{Timeout: serviceWait, Transport: &http.Transport{Proxy: nil}}

// listenAddresses is the "listening" log line of the service.
type listenAddresses struct {
	Msg   string `json:"msg"`
	HTTP  string `json:"http"`
	Admin string `json:"admin"`
}

// scrapeService runs `dicomweb-oauth serve` with one cluster against a fake
// token endpoint on loopback, sends one HTTP check for that cluster, and
// returns the body of /metrics from the admin listener.
func scrapeService(t *testing.T) string {
	t.Helper()
	const accessToken = "fake-access-token-from-deploy-test"
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, accessToken)
	}))
	t.Cleanup(idp.Close)

	dir := t.TempDir()
	secretPath := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretPath, []byte(secretPlaceholder+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`listen:
  grpc: 127.0.0.1:0
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
clusters:
  pacs:
    hosts: [pacs.example.test]
    token:
      token_url: %s/token
      client_id: orthanc
      client_secret_file: %s
`, idp.URL, secretPath)
	configPath := filepath.Join(dir, "dicomweb-oauth.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	addrs := startServe(t, configPath, dir)
	pollUntil(t, "/readyz to return 200", func() bool {
		status, _ := httpGet(t, "http://"+addrs.Admin+"/readyz")
		return status == http.StatusOK
	})
	if status, body := httpGet(t, "http://"+addrs.HTTP+"/check/pacs"); status != http.StatusOK {
		t.Fatalf("GET /check/pacs returned %d, expected 200: %s", status, body)
	}
	status, body := httpGet(t, "http://"+addrs.Admin+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics returned %d, expected 200: %s", status, body)
	}
	return body
}

// startServe starts the service binary with a configuration and returns
// the addresses of its "listening" log line. The process gets an empty
// environment and is stopped by its process ID when the test ends.
func startServe(t *testing.T, configPath, dir string) listenAddresses {
	t.Helper()
	var stderr lockedBuffer
	cmd := exec.Command(serviceBinary(t), "serve", "--config", configPath)
	cmd.Dir = dir
	cmd.Env = []string{}
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dicomweb-oauth serve: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() { stopProcess(t, cmd, exited, &stderr) })

	var addrs listenAddresses
	pollUntil(t, "the listening log line", func() bool {
		select {
		case <-exited:
			t.Fatalf("dicomweb-oauth serve exited before listening: %v\n%s", cmd.ProcessState, stderr.String())
		default:
		}
		for _, line := range strings.Split(stderr.String(), "\n") {
			if json.Unmarshal([]byte(line), &addrs) == nil && addrs.Msg == "listening" {
				return true
			}
		}
		return false
	})
	return addrs
}

// stopProcess sends SIGTERM to the process and kills it if it has not
// exited within serviceWait.
func stopProcess(t *testing.T, cmd *exec.Cmd, exited <-chan struct{}, stderr *lockedBuffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("sending SIGTERM to dicomweb-oauth (PID %d): %v", cmd.Process.Pid, err)
	}
	select {
	case <-exited:
	case <-time.After(serviceWait):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("dicomweb-oauth (PID %d) did not stop within %s of SIGTERM; stderr:\n%s",
			cmd.Process.Pid, serviceWait, stderr.String())
	}
}

// pollUntil calls cond every 20 ms until it returns true, and fails the
// test after serviceWait.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(serviceWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", serviceWait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpGet sends a GET request and returns the status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := loopbackClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}
