package envoyconfig

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// ServiceCluster is the Envoy cluster of dicomweb-oauth's gRPC listener in
// the shipped configurations.
const ServiceCluster = "dicomweb_oauth"

// httpProtocolOptions is the key of the upstream HTTP protocol options in a
// cluster's typed_extension_protocol_options.
const httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Loopback sets the addresses that Rewrite puts in place of the shipped
// ones. Every address is "127.0.0.1:PORT".
type Loopback struct {
	// Listener is the address of the one listener, where Orthanc connects.
	Listener string
	// Admin is the address of Envoy's admin interface.
	Admin string
	// Service is the gRPC address of dicomweb-oauth, the endpoint of
	// ServiceCluster.
	Service string
	// UpstreamCluster is the routed cluster that is kept and pointed at
	// Upstream, for example "dcm4chee".
	UpstreamCluster string
	// Upstream is the address of a plain-HTTP upstream server.
	Upstream string
}

// Rewrite returns a copy of a shipped Envoy bootstrap in YAML for a test on
// 127.0.0.1. It sets the ports of the admin interface and of the one
// listener, points ServiceCluster at the service, and points UpstreamCluster
// at a plain-HTTP upstream: STATIC type, no transport_socket, HTTP/1.1. The
// routes to every other cluster, and those clusters, are removed, so that
// Envoy resolves no name at startup. Rewrite returns an error when the
// bootstrap does not have this shape, or when any socket address of the
// result is not 127.0.0.1.
func Rewrite(data []byte, values Loopback) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("envoyconfig: invalid YAML: %w", err)
	}

	steps := []func(map[string]any, Loopback) error{
		rewriteAdmin,
		rewriteListener,
		rewriteRoutes,
		rewriteClusters,
		checkLoopback,
	}
	for _, step := range steps {
		if err := step(doc, values); err != nil {
			return nil, fmt.Errorf("envoyconfig: %w", err)
		}
	}

	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("envoyconfig: encode YAML: %w", err)
	}
	return out, nil
}

func rewriteAdmin(doc map[string]any, values Loopback) error {
	admin, err := mapAt(doc, "admin", "address")
	if err != nil {
		return err
	}
	return setSocketAddress(admin, values.Admin)
}

func rewriteListener(doc map[string]any, values Loopback) error {
	listeners, err := listeners(doc)
	if err != nil {
		return err
	}
	if len(listeners) != 1 {
		return fmt.Errorf("found %d listeners, want 1", len(listeners))
	}
	address, err := mapAt(listeners[0], "address")
	if err != nil {
		return err
	}
	return setSocketAddress(address, values.Listener)
}

// rewriteRoutes removes every route that sends to a cluster other than
// UpstreamCluster, and returns an error when no route sends to it.
func rewriteRoutes(doc map[string]any, values Loopback) error {
	hosts, err := virtualHosts(doc)
	if err != nil {
		return err
	}
	kept := 0
	for _, host := range hosts {
		routes, _ := host["routes"].([]any)
		var keep []any
		for _, item := range routes {
			route, _ := item.(map[string]any)
			action, _ := route["route"].(map[string]any)
			if action != nil && action["cluster"] != values.UpstreamCluster {
				continue
			}
			keep = append(keep, item)
			if action != nil {
				kept++
			}
		}
		host["routes"] = keep
	}
	if kept == 0 {
		return fmt.Errorf("no route sends to cluster %q", values.UpstreamCluster)
	}
	return nil
}

// rewriteClusters keeps ServiceCluster and UpstreamCluster, points them at
// the test bed, and drops every other cluster.
func rewriteClusters(doc map[string]any, values Loopback) error {
	clusters, err := listAt(doc, "static_resources", "clusters")
	if err != nil {
		return err
	}
	var kept []any
	found := map[string]bool{}
	for _, item := range clusters {
		cluster, _ := item.(map[string]any)
		name, _ := cluster["name"].(string)
		switch name {
		case ServiceCluster:
			err = setEndpoint(cluster, values.Service)
		case values.UpstreamCluster:
			err = makePlainHTTP(cluster, values.Upstream)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		found[name] = true
		kept = append(kept, item)
	}
	for _, name := range []string{ServiceCluster, values.UpstreamCluster} {
		if !found[name] {
			return fmt.Errorf("no cluster named %q", name)
		}
	}
	static, _ := doc["static_resources"].(map[string]any)
	static["clusters"] = kept
	return nil
}

// makePlainHTTP points an upstream cluster at one static address and makes
// it speak HTTP/1.1 without TLS.
func makePlainHTTP(cluster map[string]any, addr string) error {
	cluster["type"] = "STATIC"
	delete(cluster, "dns_lookup_family")
	delete(cluster, "transport_socket")
	options, _ := cluster["typed_extension_protocol_options"].(map[string]any)
	if options == nil {
		options = map[string]any{}
		cluster["typed_extension_protocol_options"] = options
	}
	options[httpProtocolOptions] = map[string]any{
		"@type": "type.googleapis.com/" + httpProtocolOptions,
		"explicit_http_config": map[string]any{
			"http_protocol_options": map[string]any{},
		},
	}
	return setEndpoint(cluster, addr)
}

// setEndpoint replaces the endpoints of a cluster with one address.
func setEndpoint(cluster map[string]any, addr string) error {
	address := map[string]any{}
	if err := setSocketAddress(address, addr); err != nil {
		return err
	}
	cluster["load_assignment"] = map[string]any{
		"cluster_name": cluster["name"],
		"endpoints": []any{map[string]any{
			"lb_endpoints": []any{map[string]any{
				"endpoint": map[string]any{"address": address},
			}},
		}},
	}
	return nil
}

// setSocketAddress sets the socket_address of an Envoy Address message.
func setSocketAddress(address map[string]any, addr string) error {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("invalid port in %q: %w", addr, err)
	}
	address["socket_address"] = map[string]any{"address": host, "port_value": port}
	return nil
}

// checkLoopback walks the whole document and returns an error for a
// socket_address on any host but 127.0.0.1, and for a cluster whose type
// makes Envoy resolve names.
func checkLoopback(doc map[string]any, _ Loopback) error {
	var errs []error
	walk(doc, func(key string, value any) {
		switch key {
		case "socket_address":
			address, _ := value.(map[string]any)
			if address["address"] != "127.0.0.1" {
				errs = append(errs, fmt.Errorf("socket_address %v is not on 127.0.0.1", address["address"]))
			}
		case "type":
			if value == "LOGICAL_DNS" || value == "STRICT_DNS" {
				errs = append(errs, fmt.Errorf("a cluster of type %v is left", value))
			}
		}
	})
	return errors.Join(errs...)
}

// walk calls visit for every key and value of every mapping in value.
func walk(value any, visit func(key string, value any)) {
	switch v := value.(type) {
	case map[string]any:
		for key, child := range v {
			visit(key, child)
			walk(child, visit)
		}
	case []any:
		for _, child := range v {
			walk(child, visit)
		}
	}
}

func listeners(doc map[string]any) ([]map[string]any, error) {
	items, err := listAt(doc, "static_resources", "listeners")
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(items))
	for _, item := range items {
		listener, ok := item.(map[string]any)
		if !ok {
			return nil, errors.New("a listener is not a mapping")
		}
		out = append(out, listener)
	}
	return out, nil
}

// virtualHosts returns the virtual hosts of the inline route configurations
// of every HTTP connection manager.
func virtualHosts(doc map[string]any) ([]map[string]any, error) {
	listeners, err := listeners(doc)
	if err != nil {
		return nil, err
	}
	var hosts []map[string]any
	for _, listener := range listeners {
		chains, _ := listener["filter_chains"].([]any)
		for _, item := range chains {
			chain, _ := item.(map[string]any)
			filters, _ := chain["filters"].([]any)
			for _, item := range filters {
				filter, _ := item.(map[string]any)
				items, _ := listAt(filter, "typed_config", "route_config", "virtual_hosts")
				for _, item := range items {
					if host, ok := item.(map[string]any); ok {
						hosts = append(hosts, host)
					}
				}
			}
		}
	}
	if len(hosts) == 0 {
		return nil, errors.New("no virtual host with inline routes found")
	}
	return hosts, nil
}

// mapAt returns the mapping at the path of keys.
func mapAt(doc map[string]any, keys ...string) (map[string]any, error) {
	current := doc
	for i, key := range keys {
		next, ok := current[key].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("no mapping at %v", keys[:i+1])
		}
		current = next
	}
	return current, nil
}

// listAt returns the sequence at the path of keys.
func listAt(doc map[string]any, keys ...string) ([]any, error) {
	parent, err := mapAt(doc, keys[:len(keys)-1]...)
	if err != nil {
		return nil, err
	}
	list, ok := parent[keys[len(keys)-1]].([]any)
	if !ok {
		return nil, fmt.Errorf("no sequence at %v", keys)
	}
	return list, nil
}
