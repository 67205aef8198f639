// Package deploy checks the Kubernetes kit (deploy/kubernetes) and the
// image (deploy/Dockerfile) against each other, against the flags of
// examples/shards-demo, and against the library's own constants, so that a
// change to one of them that breaks a cluster fails here with the field
// named instead of in a cluster.
//
//	cd deploy && go test ./...
package deploy

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	kubeDir    = "kubernetes"
	dockerfile = "Dockerfile"
	demoPkg    = "./examples/shards-demo"
)

// Library sources the kit must agree with (paths relative to deploy/).
const (
	roninGo   = "../ronin.go"          // ShutdownTimeout: how long Shutdown drains
	managerGo = "../manager/config.go" // DefaultClusterPort, DefaultClientPort
)

// demoFlags are the flags of examples/shards-demo; true marks a boolean.
var demoFlags = map[string]bool{
	"node": false, "peers": false, "host": false, "client-host": false,
	"data": false, "shards": false, "ttl": false, "http": false,
	"metrics": false, "v": true,
}

// peerSchemes are the schemes manager.Config.Peers accepts.
var peerSchemes = []string{"nats", "nats-route", "tls"}

// minTTL is the smallest TTL the library accepts.
const minTTL = 500 * time.Millisecond

// libFacts are the library constants the kit depends on.
type libFacts struct {
	shutdownTimeout time.Duration
	routePort       int // the demo has no flag for it: manager.DefaultClusterPort
	clientPort      int // manager.DefaultClientPort
}

func TestKit(t *testing.T) {
	files, err := loadKit()
	if err != nil {
		t.Fatal(err)
	}
	lib, err := loadLibFacts()
	if err != nil {
		t.Fatal(err)
	}
	problems := checkKit(files, lib)
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) == 0 {
		t.Logf("kit OK: %d files; drain bound %v, route port %d", len(files), lib.shutdownTimeout, lib.routePort)
	}
}

// TestKitCatchesBreakage breaks one field at a time in memory and requires
// checkKit to name it, so that the checks above cannot silently pass.
func TestKitCatchesBreakage(t *testing.T) {
	files, err := loadKit()
	if err != nil {
		t.Fatal(err)
	}
	lib, err := loadLibFacts()
	if err != nil {
		t.Fatal(err)
	}
	sts, svc, pdb, kus := kubeDir+"/statefulset.yaml", kubeDir+"/service.yaml", kubeDir+"/pdb.yaml", kubeDir+"/kustomization.yaml"
	cases := []struct {
		name, file, old, new, want string
	}{
		{"replicas", sts, "replicas: 3", "replicas: 2", "spec.replicas"},
		{"pod management", sts, "podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", "podManagementPolicy"},
		{"serviceName", sts, "serviceName: ronin-headless", "serviceName: ronin", "clusterIP"},
		{"headless clusterIP", svc, "clusterIP: None", "clusterIP: 10.0.0.10", "clusterIP"},
		{"publishNotReadyAddresses", svc, "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "publishNotReadyAddresses"},
		{"NodeID source", sts, "fieldPath: metadata.name", "fieldPath: spec.nodeName", "metadata.name"},
		{"NodeID literal", sts, "-node=$(POD_NAME)", "-node=ronin-0", "-node"},
		{"peer missing", sts, ",nats://ronin-2.ronin-headless:6222", "", "ronin-2.ronin-headless:6222"},
		{"peer port", sts, "ronin-1.ronin-headless:6222", "ronin-1.ronin-headless:4222", "-peers"},
		{"peer service", sts, "ronin-0.ronin-headless:6222", "ronin-0.ronin:6222", "-peers"},
		{"route port of the Service", svc, "port: 6222", "port: 7222", "-peers"},
		{"route listen host", sts, "-host=0.0.0.0", "-host=127.0.0.1", "-host"},
		{"client host", sts, "-client-host=127.0.0.1", "-client-host=0.0.0.0", "-client-host"},
		{"client host unset", sts, "            - -client-host=127.0.0.1\n", "", "-client-host"},
		{"data flag", sts, "-data=/data", "-data=/var/lib/ronin", "-data"},
		{"data mount", sts, "mountPath: /data", "mountPath: /srv", "-data"},
		{"claim name", sts, "      name: data\n      spec:", "      name: store\n      spec:", "volumeClaimTemplate"},
		{"readiness path", sts, "path: /readyz", "path: /healthz", "readinessProbe"},
		{"liveness path", sts, "path: /healthz", "path: /readyz", "livenessProbe"},
		{"http port", sts, "-http=:8080", "-http=:8081", "-http"},
		{"grace period", sts, "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds"},
		{"non-root", sts, "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"},
		{"unknown flag", sts, "-ttl=5s", "-lease=5s", "unknown flag"},
		{"short TTL", sts, "-ttl=5s", "-ttl=100ms", "-ttl"},
		{"PDB budget", pdb, "maxUnavailable: 1", "maxUnavailable: 2", "quorum"},
		{"PDB blocks drains", pdb, "maxUnavailable: 1", "minAvailable: 3", "never"},
		{"PDB selector", pdb, "      app.kubernetes.io/name: ronin", "      app: ronin", "PodDisruptionBudget"},
		{"kustomization", kus, "  - pdb.yaml\n", "", "pdb.yaml"},
		{"EXPOSE", dockerfile, "EXPOSE 4222 6222 8080 9090", "EXPOSE 4222 8080 9090", "EXPOSE"},
		{"build package", dockerfile, "./examples/shards-demo", "./examples/minimal", "go build"},
		{"cgo", dockerfile, "CGO_ENABLED=0 ", "", "CGO_ENABLED=0"},
		{"image user", dockerfile, "USER 65532:65532", "USER root", "USER"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, ok := files[c.file]
			if !ok {
				t.Fatalf("%s: no such file in the kit", c.file)
			}
			if !strings.Contains(src, c.old) {
				t.Fatalf("%s no longer contains %q: update this breakage case", c.file, c.old)
			}
			broken := make(map[string]string, len(files))
			for k, v := range files {
				broken[k] = v
			}
			broken[c.file] = strings.Replace(src, c.old, c.new, 1)
			problems := checkKit(broken, lib)
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					t.Logf("caught: %s", p)
					return
				}
			}
			t.Errorf("%s: %q -> %q went unnoticed (want a problem mentioning %q); problems: %q",
				c.file, c.old, c.new, c.want, problems)
		})
	}
}

// loadKit reads the Dockerfile and every file in kubernetes/, keyed by their
// path relative to deploy/.
func loadKit() (map[string]string, error) {
	files := map[string]string{}
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		return nil, err
	}
	files[dockerfile] = string(b)
	entries, err := os.ReadDir(kubeDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(kubeDir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[kubeDir+"/"+e.Name()] = string(b)
	}
	return files, nil
}

// loadLibFacts reads the constants the kit depends on from the library's
// source, so that the kit follows them.
func loadLibFacts() (libFacts, error) {
	var f libFacts
	m, err := sourceConst(roninGo, "ShutdownTimeout", `(\d+)\s*\*\s*time\.(Second|Minute)`)
	if err != nil {
		return f, err
	}
	n, _ := strconv.Atoi(m[1])
	f.shutdownTimeout = time.Duration(n) * map[string]time.Duration{"Second": time.Second, "Minute": time.Minute}[m[2]]
	for name, dst := range map[string]*int{"DefaultClusterPort": &f.routePort, "DefaultClientPort": &f.clientPort} {
		m, err := sourceConst(managerGo, name, `(\d+)`)
		if err != nil {
			return f, err
		}
		*dst, _ = strconv.Atoi(m[1])
	}
	return f, nil
}

// sourceConst finds "name = <value>" in a Go file and matches value against
// valueRE.
func sourceConst(file, name, valueRE string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the library constant %s: %w", name, err)
	}
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `\s*=\s*` + valueRE + `\s*(//.*)?$`)
	m := re.FindStringSubmatch(string(b))
	if m == nil {
		return nil, fmt.Errorf("%s: no constant %q of the form %s; the kit depends on it: update loadLibFacts", file, name, valueRE)
	}
	return m, nil
}

// ---- Kubernetes objects: only the fields the kit relies on ----

type meta struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   meta   `json:"metadata"`
}

// intOrString is a Kubernetes IntOrString (ports, PDB budgets).
type intOrString struct {
	Int   int
	Str   string
	IsStr bool
}

func (v *intOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.IsStr = true
		return json.Unmarshal(b, &v.Str)
	}
	return json.Unmarshal(b, &v.Int)
}

func (v intOrString) String() string {
	if v.IsStr {
		return strconv.Quote(v.Str)
	}
	return strconv.Itoa(v.Int)
}

type service struct {
	Metadata meta `json:"metadata"`
	Spec     struct {
		ClusterIP                string            `json:"clusterIP"`
		PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses"`
		Selector                 map[string]string `json:"selector"`
		Ports                    []struct {
			Name       string       `json:"name"`
			Port       int          `json:"port"`
			TargetPort *intOrString `json:"targetPort"`
		} `json:"ports"`
	} `json:"spec"`
}

type securityContext struct {
	RunAsNonRoot *bool  `json:"runAsNonRoot"`
	RunAsUser    *int64 `json:"runAsUser"`
}

type probe struct {
	HTTPGet *struct {
		Path string      `json:"path"`
		Port intOrString `json:"port"`
	} `json:"httpGet"`
	PeriodSeconds    int `json:"periodSeconds"`
	FailureThreshold int `json:"failureThreshold"`
}

type container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Env     []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	ReadinessProbe *probe `json:"readinessProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
	Resources struct {
		Requests map[string]any `json:"requests"`
		Limits   map[string]any `json:"limits"`
	} `json:"resources"`
	SecurityContext *securityContext `json:"securityContext"`
}

type statefulSet struct {
	Metadata meta `json:"metadata"`
	Spec     struct {
		Replicas            *int   `json:"replicas"`
		ServiceName         string `json:"serviceName"`
		PodManagementPolicy string `json:"podManagementPolicy"`
		Selector            struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata meta `json:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int             `json:"terminationGracePeriodSeconds"`
				SecurityContext               *securityContext `json:"securityContext"`
				Containers                    []container      `json:"containers"`
				Volumes                       []struct {
					Name string `json:"name"`
				} `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
		VolumeClaimTemplates []struct {
			Metadata meta `json:"metadata"`
			Spec     struct {
				Resources struct {
					Requests map[string]any `json:"requests"`
				} `json:"resources"`
			} `json:"spec"`
		} `json:"volumeClaimTemplates"`
	} `json:"spec"`
}

type podDisruptionBudget struct {
	Metadata meta `json:"metadata"`
	Spec     struct {
		MinAvailable   *intOrString `json:"minAvailable"`
		MaxUnavailable *intOrString `json:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
	} `json:"spec"`
}

type kustomization struct {
	Resources []string `json:"resources"`
}

// object is one YAML document of the kit, as JSON.
type object struct {
	file string
	header
	json []byte
}

func (o object) String() string { return fmt.Sprintf("%s: %s %q", o.file, o.Kind, o.Metadata.Name) }

// ---- the checks ----

// problems collects one message per wrong field.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// checkKit returns every problem found in files (keyed as loadKit does).
func checkKit(files map[string]string, lib libFacts) []string {
	var p problems
	objs := parseObjects(files, &p)
	checkKustomization(files, &p)

	var (
		sets     []statefulSet
		pdbs     []podDisruptionBudget
		services = map[string]service{}
	)
	for _, o := range objs {
		var err error
		switch o.Kind {
		case "StatefulSet":
			var s statefulSet
			err = json.Unmarshal(o.json, &s)
			sets = append(sets, s)
		case "Service":
			var s service
			err = json.Unmarshal(o.json, &s)
			services[s.Metadata.Name] = s
		case "PodDisruptionBudget":
			var d podDisruptionBudget
			err = json.Unmarshal(o.json, &d)
			pdbs = append(pdbs, d)
		}
		if err != nil {
			p.add("%v: %v", o, err)
		}
	}
	if len(sets) != 1 {
		p.add("%s: want exactly one StatefulSet, found %d", kubeDir, len(sets))
		return p
	}
	ss := sets[0]
	c := checkStatefulSet(ss, services, lib, &p)
	if len(pdbs) != 1 {
		p.add("%s: want exactly one PodDisruptionBudget, found %d", kubeDir, len(pdbs))
	} else {
		checkPDB(pdbs[0], ss, &p)
	}
	if df, ok := files[dockerfile]; !ok {
		p.add("%s: missing", dockerfile)
	} else if c != nil {
		checkDockerfile(df, c, &p)
	}
	return p
}

// parseObjects splits every YAML file of kubernetes/ into documents.
func parseObjects(files map[string]string, p *problems) []object {
	var objs []object
	for _, name := range sortedKeys(files) {
		if !isYAML(name) || path.Base(name) == "kustomization.yaml" {
			continue
		}
		n := 0
		for i, doc := range splitDocuments(files[name]) {
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				p.add("%s: document %d is not valid YAML: %v", name, i+1, err)
				continue
			}
			if string(j) == "null" {
				continue // empty or comments only
			}
			var h header
			if err := json.Unmarshal(j, &h); err != nil {
				p.add("%s: document %d is not a Kubernetes object: %v", name, i+1, err)
				continue
			}
			if h.APIVersion == "" || h.Kind == "" || h.Metadata.Name == "" {
				p.add("%s: document %d needs apiVersion, kind and metadata.name (got %q, %q, %q)",
					name, i+1, h.APIVersion, h.Kind, h.Metadata.Name)
				continue
			}
			objs = append(objs, object{file: name, header: h, json: j})
			n++
		}
		if n == 0 {
			p.add("%s: no Kubernetes object in the file", name)
		}
	}
	return objs
}

func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.TrimRight(line, " \t\r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

func isYAML(name string) bool {
	return strings.HasPrefix(name, kubeDir+"/") && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkKustomization: resources lists every YAML file of kubernetes/ and
// nothing else.
func checkKustomization(files map[string]string, p *problems) {
	const name = kubeDir + "/kustomization.yaml"
	src, ok := files[name]
	if !ok {
		p.add("%s: missing (kubectl apply -k needs it)", name)
		return
	}
	var k kustomization
	if err := yaml.Unmarshal([]byte(src), &k); err != nil {
		p.add("%s: %v", name, err)
		return
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			p.add("%s: resources lists %s twice", name, r)
		}
		listed[r] = true
		if _, ok := files[kubeDir+"/"+r]; !ok {
			p.add("%s: resources lists %s, which is not a file in deploy/%s", name, r, kubeDir)
		}
	}
	for _, f := range sortedKeys(files) {
		if isYAML(f) && f != name && !listed[path.Base(f)] {
			p.add("%s: resources does not list %s, so kubectl apply -k would not apply it", name, path.Base(f))
		}
	}
}

// checkStatefulSet checks the StatefulSet, its Services and its flags, and
// returns its container for the Dockerfile check (nil if unusable).
func checkStatefulSet(ss statefulSet, services map[string]service, lib libFacts, p *problems) *container {
	const f = kubeDir + "/statefulset.yaml"
	spec := &ss.Spec
	pod := &spec.Template.Spec
	podLabels := spec.Template.Metadata.Labels

	replicas := 1
	switch {
	case spec.Replicas == nil:
		p.add("%s: spec.replicas is unset (defaults to 1), want 3: a 3-member JetStream quorum", f)
	case *spec.Replicas != 3:
		p.add("%s: spec.replicas = %d, want 3: a 3-member JetStream quorum", f, *spec.Replicas)
		replicas = *spec.Replicas
	default:
		replicas = 3
	}
	if spec.PodManagementPolicy != "Parallel" {
		p.add("%s: spec.podManagementPolicy = %q, want \"Parallel\": no pod is ready before JetStream has a quorum, so OrderedReady never starts ronin-1",
			f, spec.PodManagementPolicy)
	}
	if len(spec.Selector.MatchLabels) == 0 || !subset(spec.Selector.MatchLabels, podLabels) {
		p.add("%s: spec.selector.matchLabels %v must be non-empty and match spec.template.metadata.labels %v",
			f, spec.Selector.MatchLabels, podLabels)
	}

	// The headless Service that gives the pods their stable DNS names.
	headless, ok := services[spec.ServiceName]
	switch {
	case spec.ServiceName == "":
		p.add("%s: spec.serviceName is empty, want the headless Service's name", f)
	case !ok:
		p.add("%s: spec.serviceName = %q, but no Service of that name is in %s", f, spec.ServiceName, kubeDir)
	default:
		hf := kubeDir + "/service.yaml"
		if headless.Spec.ClusterIP != "None" {
			p.add("%s: Service %q (the StatefulSet's serviceName) has spec.clusterIP %q, want \"None\" (headless: per-pod DNS names)",
				hf, spec.ServiceName, headless.Spec.ClusterIP)
		}
		if !headless.Spec.PublishNotReadyAddresses {
			p.add("%s: Service %q: spec.publishNotReadyAddresses must be true: peers must find each other before any is ready",
				hf, spec.ServiceName)
		}
	}

	// terminationGracePeriodSeconds must outlast the drain.
	grace := 30 // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if time.Duration(grace)*time.Second <= lib.shutdownTimeout {
		p.add("%s: spec.template.spec.terminationGracePeriodSeconds = %d, want more than ronin.ShutdownTimeout (%v, from %s): SIGKILL would cut the drain short",
			f, grace, lib.shutdownTimeout, roninGo)
	}

	if len(pod.Containers) != 1 {
		p.add("%s: want exactly one container, found %d", f, len(pod.Containers))
		return nil
	}
	c := &pod.Containers[0]
	cf := fmt.Sprintf("%s: container %q", f, c.Name)
	if len(c.Command) > 0 {
		p.add("%s: command %q overrides the image's ENTRYPOINT (the demo binary); pass flags in args", cf, c.Command)
	}

	// Non-root.
	nonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		nonRoot = *c.SecurityContext.RunAsNonRoot
	}
	if !nonRoot {
		p.add("%s: securityContext.runAsNonRoot must be true (pod or container)", cf)
	}
	for _, sc := range []*securityContext{pod.SecurityContext, c.SecurityContext} {
		if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			p.add("%s: securityContext.runAsUser is 0 (root)", cf)
		}
	}
	for _, r := range []struct {
		field string
		m     map[string]any
		keys  []string
	}{{"resources.requests", c.Resources.Requests, []string{"cpu", "memory"}}, {"resources.limits", c.Resources.Limits, []string{"memory"}}} {
		for _, k := range r.keys {
			if _, ok := r.m[k]; !ok {
				p.add("%s: %s.%s is unset", cf, r.field, k)
			}
		}
	}

	// Ports: name -> number, and every number declared.
	named := map[string]int{}
	declared := map[int]bool{}
	for _, cp := range c.Ports {
		declared[cp.ContainerPort] = true
		if cp.Name != "" {
			named[cp.Name] = cp.ContainerPort
		}
	}
	resolve := func(v intOrString) (int, bool) {
		if v.IsStr {
			n, ok := named[v.Str]
			return n, ok
		}
		return v.Int, declared[v.Int]
	}
	for _, want := range []struct {
		port int
		what string
	}{{lib.routePort, "the route port (manager.DefaultClusterPort)"}, {lib.clientPort, "the client port (manager.DefaultClientPort)"}} {
		if !declared[want.port] {
			p.add("%s: ports does not declare %d, %s", cf, want.port, want.what)
		}
	}
	for _, name := range sortedKeys(services) {
		svc := services[name]
		if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, podLabels) {
			p.add("%s/service.yaml: Service %q: spec.selector %v does not select the StatefulSet's pods (labels %v)",
				kubeDir, name, svc.Spec.Selector, podLabels)
		}
		for _, sp := range svc.Spec.Ports {
			target := intOrString{Int: sp.Port}
			if sp.TargetPort != nil {
				target = *sp.TargetPort
			}
			if _, ok := resolve(target); !ok {
				p.add("%s/service.yaml: Service %q port %q: targetPort %v is not a port of %s",
					kubeDir, name, sp.Name, target, cf)
			}
		}
	}

	// Flags.
	flags := parseArgs(c.Args, cf, p)
	need := func(name string) (string, bool) {
		v, ok := flags[name]
		if !ok {
			p.add("%s: args lack -%s", cf, name)
		}
		return v, ok
	}

	// -node: the pod name through the downward API.
	if v, ok := need("node"); ok {
		ref := regexp.MustCompile(`^\$\(([A-Za-z_][A-Za-z0-9_]*)\)$`).FindStringSubmatch(v)
		if ref == nil {
			p.add("%s: -node=%q, want $(VAR) with VAR set from metadata.name through the downward API (a stable NodeID per pod)", cf, v)
		} else {
			src := ""
			for _, e := range c.Env {
				if e.Name == ref[1] && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					src = e.ValueFrom.FieldRef.FieldPath
				}
			}
			if src != "metadata.name" {
				p.add("%s: -node=%s: env %s must come from the downward API fieldRef metadata.name (the pod name), got %q",
					cf, v, ref[1], src)
			}
		}
	}

	// -host: routes must be reachable from the other pods.
	if v, ok := need("host"); ok && isLoopback(v) {
		p.add("%s: -host=%q listens for routes on loopback only; the other pods cannot reach it (use 0.0.0.0)", cf, v)
	}
	// -client-host: the client port has no authentication in the demo,
	// and without the flag the demo listens on -host.
	if v, ok := flags["client-host"]; !ok {
		p.add("%s: args lack -client-host=127.0.0.1: the demo's client port then listens on -host=%q, unauthenticated", cf, flags["host"])
	} else if !isLoopback(v) {
		p.add("%s: -client-host=%q exposes the unauthenticated NATS client port; keep it 127.0.0.1 unless ServerOptions adds auth", cf, v)
	}

	// -peers: exactly the replicas' stable DNS names through the headless
	// Service, on the route port that the Service exposes.
	if v, ok := need("peers"); ok && spec.ServiceName != "" {
		routePort := -1
		for _, sp := range headless.Spec.Ports {
			target := intOrString{Int: sp.Port}
			if sp.TargetPort != nil {
				target = *sp.TargetPort
			}
			if n, ok := resolve(target); ok && n == lib.routePort {
				routePort = sp.Port
			}
		}
		if routePort < 0 {
			p.add("%s/service.yaml: Service %q exposes no port whose target is the route port %d", kubeDir, spec.ServiceName, lib.routePort)
		}
		want := map[string]bool{}
		for i := range replicas {
			want[net.JoinHostPort(fmt.Sprintf("%s-%d.%s", ss.Metadata.Name, i, spec.ServiceName), strconv.Itoa(routePort))] = true
		}
		seen := map[string]bool{}
		for _, e := range strings.Split(v, ",") {
			u, err := url.Parse(strings.TrimSpace(e))
			if err != nil || !slices.Contains(peerSchemes, u.Scheme) || u.Port() == "" {
				p.add("%s: -peers entry %q is not a route URL (scheme %s, host and port)", cf, e, strings.Join(peerSchemes, "/"))
				continue
			}
			hp := strings.ToLower(u.Host)
			if seen[hp] {
				p.add("%s: -peers names %s twice", cf, hp)
			}
			seen[hp] = true
			if !want[hp] {
				p.add("%s: -peers entry %q is not one of the replicas' stable names %v (<statefulset>-<i>.<headless service>:<route port the Service exposes>)",
					cf, e, sortedKeys(want))
			}
		}
		for _, hp := range sortedKeys(want) {
			if !seen[hp] {
				p.add("%s: -peers lacks %s (replica of %d)", cf, hp, replicas)
			}
		}
	}

	// -data: a volumeClaimTemplate mounted at that path.
	if v, ok := need("data"); ok {
		mount := ""
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == path.Clean(v) {
				mount = m.Name
			}
		}
		claims := map[string]bool{}
		for _, t := range spec.VolumeClaimTemplates {
			claims[t.Metadata.Name] = true
			if _, ok := t.Spec.Resources.Requests["storage"]; !ok {
				p.add("%s: volumeClaimTemplate %q: spec.resources.requests.storage is unset", f, t.Metadata.Name)
			}
		}
		switch {
		case !path.IsAbs(v):
			p.add("%s: -data=%q must be an absolute path on the persistent volume", cf, v)
		case mount == "":
			p.add("%s: -data=%q: no volumeMount at that path, so JetStream (and every fencing token) would live in the container's filesystem", cf, v)
		case !claims[mount]:
			p.add("%s: -data=%q is mounted from volume %q, which is no volumeClaimTemplate (have %v): tokens must survive a pod's replacement",
				cf, v, mount, sortedKeys(claims))
		}
		for _, vol := range pod.Volumes {
			if claims[vol.Name] {
				p.add("%s: pod volume %q shadows the volumeClaimTemplate of that name", f, vol.Name)
			}
		}
	}

	// -http: probes on its port; -metrics declared.
	httpPort := -1
	if v, ok := need("http"); ok {
		httpPort = listenPort(v, "-http", cf, p)
		if httpPort > 0 && !declared[httpPort] {
			p.add("%s: -http=%q: port %d is not in ports", cf, v, httpPort)
		}
	}
	if v, ok := need("metrics"); ok {
		if n := listenPort(v, "-metrics", cf, p); n > 0 && !declared[n] {
			p.add("%s: -metrics=%q: port %d is not in ports", cf, v, n)
		}
	}
	for _, pr := range []struct {
		field, path string
		probe       *probe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		switch {
		case pr.probe == nil || pr.probe.HTTPGet == nil:
			p.add("%s: %s.httpGet is unset, want path %s on the -http port", cf, pr.field, pr.path)
			continue
		case pr.probe.HTTPGet.Path != pr.path:
			p.add("%s: %s.httpGet.path = %q, want %q", cf, pr.field, pr.probe.HTTPGet.Path, pr.path)
		}
		if n, ok := resolve(pr.probe.HTTPGet.Port); !ok || n != httpPort {
			p.add("%s: %s.httpGet.port %v is not the -http port %d", cf, pr.field, pr.probe.HTTPGet.Port, httpPort)
		}
	}
	if lp := c.LivenessProbe; lp != nil {
		period, failures := or(lp.PeriodSeconds, 10), or(lp.FailureThreshold, 3)
		if period*failures < 30 {
			p.add("%s: livenessProbe restarts after %d s (periodSeconds %d × failureThreshold %d); want at least 30 s: a node waiting for a quorum or a slow disk is not dead",
				cf, period*failures, period, failures)
		}
	}

	if v, ok := need("ttl"); ok {
		if d, err := time.ParseDuration(v); err != nil || d < minTTL {
			p.add("%s: -ttl=%q must be a duration of at least %v", cf, v, minTTL)
		}
	}
	if v, ok := need("shards"); ok {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			p.add("%s: -shards=%q must be a positive integer", cf, v)
		}
	}
	return c
}

// parseArgs parses Go flag syntax (-name=value, -name value, --name) for
// the demo's flags.
func parseArgs(args []string, where string, p *problems) map[string]string {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			p.add("%s: args[%d] %q is not a flag (the demo takes flags only)", where, i, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		isBool, known := demoFlags[name]
		if !known {
			p.add("%s: args[%d]: unknown flag -%s (the demo's flags: %v)", where, i, name, sortedKeys(demoFlags))
			continue
		}
		if !hasValue && !isBool {
			if i+1 == len(args) {
				p.add("%s: flag -%s has no value", where, name)
				continue
			}
			i++
			value = args[i]
		}
		if _, dup := flags[name]; dup {
			p.add("%s: flag -%s is given twice", where, name)
		}
		flags[name] = value
	}
	return flags
}

func listenPort(addr, flag, where string, p *problems) int {
	_, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 1 || n > 65535 {
		p.add("%s: %s=%q is not a [host]:port listen address", where, flag, addr)
		return -1
	}
	return n
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsLoopback()
}

func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkPDB: the budget selects the StatefulSet's pods and keeps a quorum
// while still allowing one voluntary disruption.
func checkPDB(d podDisruptionBudget, ss statefulSet, p *problems) {
	f := fmt.Sprintf("%s/pdb.yaml: PodDisruptionBudget %q", kubeDir, d.Metadata.Name)
	labels := ss.Spec.Template.Metadata.Labels
	if len(d.Spec.Selector.MatchLabels) == 0 || !subset(d.Spec.Selector.MatchLabels, labels) {
		p.add("%s: spec.selector.matchLabels %v does not select the StatefulSet's pods (labels %v)", f, d.Spec.Selector.MatchLabels, labels)
	}
	replicas := 3
	if ss.Spec.Replicas != nil {
		replicas = *ss.Spec.Replicas
	}
	quorum := replicas/2 + 1
	// Kubernetes rounds percentages up for both fields.
	count := func(v intOrString) (int, bool) {
		if !v.IsStr {
			return v.Int, true
		}
		pct, err := strconv.Atoi(strings.TrimSuffix(v.Str, "%"))
		if err != nil || !strings.HasSuffix(v.Str, "%") {
			return 0, false
		}
		return int(math.Ceil(float64(pct) * float64(replicas) / 100)), true
	}
	var minAvail int
	switch lo, hi := d.Spec.MinAvailable, d.Spec.MaxUnavailable; {
	case (lo == nil) == (hi == nil):
		p.add("%s: set exactly one of spec.maxUnavailable and spec.minAvailable", f)
		return
	case hi != nil:
		n, ok := count(*hi)
		if !ok {
			p.add("%s: spec.maxUnavailable %v is not a number or percentage", f, *hi)
			return
		}
		minAvail = replicas - n
	default:
		n, ok := count(*lo)
		if !ok {
			p.add("%s: spec.minAvailable %v is not a number or percentage", f, *lo)
			return
		}
		minAvail = n
	}
	if minAvail < quorum {
		p.add("%s: lets %d of %d pods go at once, leaving %d: below the JetStream quorum of %d (want maxUnavailable 1 or minAvailable %d)",
			f, replicas-minAvail, replicas, minAvail, quorum, quorum)
	}
	if minAvail >= replicas {
		p.add("%s: requires all %d pods available, so a node drain can never evict one (want maxUnavailable 1)", f, replicas)
	}
}

// dockerStage is one FROM stage of a Dockerfile.
type dockerStage struct {
	from                   string
	user, entrypoint, runs []string
	expose                 []string
}

// checkDockerfile: the image builds the demo statically and exposes every
// port the manifests use.
func checkDockerfile(src string, c *container, p *problems) {
	var stages []*dockerStage
	var logical strings.Builder
	for _, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(cont + " ")
			continue
		}
		logical.WriteString(line)
		instr := strings.TrimSpace(logical.String())
		logical.Reset()
		if instr == "" {
			continue
		}
		kw, rest, _ := strings.Cut(instr, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(kw) {
		case "FROM":
			stages = append(stages, &dockerStage{from: rest})
		case "RUN", "USER", "ENTRYPOINT", "EXPOSE":
			if len(stages) == 0 {
				p.add("%s: %s before FROM", dockerfile, kw)
				continue
			}
			s := stages[len(stages)-1]
			switch strings.ToUpper(kw) {
			case "RUN":
				s.runs = append(s.runs, rest)
			case "USER":
				s.user = append(s.user, rest)
			case "ENTRYPOINT":
				s.entrypoint = append(s.entrypoint, rest)
			case "EXPOSE":
				s.expose = append(s.expose, strings.Fields(rest)...)
			}
		}
	}
	if len(stages) < 2 {
		p.add("%s: want a multi-stage build (a Go stage and a small runtime stage), found %d stage(s)", dockerfile, len(stages))
		return
	}
	built := false
	for _, s := range stages[:len(stages)-1] {
		for _, r := range s.runs {
			if strings.Contains(r, "go build") && strings.Contains(r, demoPkg) {
				built = true
				if !strings.Contains(r, "CGO_ENABLED=0") {
					p.add("%s: the go build of %s must set CGO_ENABLED=0 (static binary for the runtime image): %q", dockerfile, demoPkg, r)
				}
			}
		}
	}
	if !built {
		p.add("%s: no RUN in a build stage runs go build %s", dockerfile, demoPkg)
	}
	final := stages[len(stages)-1]
	if len(final.entrypoint) == 0 || !strings.Contains(final.entrypoint[len(final.entrypoint)-1], path.Base(demoPkg)) {
		p.add("%s: the final stage's ENTRYPOINT %q must run the %s binary", dockerfile, final.entrypoint, path.Base(demoPkg))
	}
	user := ""
	if len(final.user) > 0 {
		user = final.user[len(final.user)-1]
	} else if strings.HasSuffix(final.from, ":nonroot") {
		user = "nonroot"
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		p.add("%s: the final stage must run as a non-root USER, got %q", dockerfile, user)
	}
	exposed := map[int]bool{}
	for _, e := range final.expose {
		n, err := strconv.Atoi(strings.TrimSuffix(e, "/tcp"))
		if err != nil {
			p.add("%s: EXPOSE %q is not a TCP port", dockerfile, e)
			continue
		}
		exposed[n] = true
	}
	for _, cp := range c.Ports {
		if !exposed[cp.ContainerPort] {
			p.add("%s: EXPOSE lacks %d (%s), a port of the StatefulSet's container", dockerfile, cp.ContainerPort, cp.Name)
		}
	}
}
