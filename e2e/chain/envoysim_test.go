package chain

import (
	"context"
	"testing"
)

func TestShippedStatusOnError(t *testing.T) {
	status, err := ShippedStatusOnError(context.Background())
	if err != nil {
		t.Fatalf("ShippedStatusOnError: %v", err)
	}
	if status != 503 {
		t.Errorf("status_on_error = %d, want 503 as %s sets it", status, ShippedExtAuthzFile)
	}
}

func TestProxyIsEnvoySim(t *testing.T) {
	tests := []struct {
		proxy Proxy
		want  bool
	}{
		{ProxyNginx, false},
		{ProxyShippedNginx, false},
		{ProxyShippedEnvoy, false},
		{ProxyEnvoySimExtProc, true},
		{ProxyEnvoySimExtProcUpstream, true},
		{ProxyEnvoySimExtAuthz, true},
		{"envoysim", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.proxy), func(t *testing.T) {
			if got := tt.proxy.IsEnvoySim(); got != tt.want {
				t.Errorf("IsEnvoySim = %v, want %v", got, tt.want)
			}
		})
	}
}
