package conf

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1024", want: 1024},
		{in: "512B", want: 512},
		{in: "1KB", want: 1 << 10},
		{in: "10KB", want: 10 << 10},
		{in: "10kb", want: 10 << 10},
		{in: "4KiB", want: 4 << 10},
		{in: "100MB", want: 100 << 20},
		{in: "100 MB", want: 100 << 20},
		{in: "2M", want: 2 << 20},
		{in: "1GB", want: 1 << 30},
		{in: "3TB", want: 3 << 40},
		{in: " 7B ", want: 7},
		{in: "", wantErr: "invalid size"},
		{in: "MB", wantErr: "invalid size"},
		{in: "-1KB", wantErr: "negative"},
		{in: "1.5MB", wantErr: "unknown unit"},
		{in: "10XB", wantErr: "unknown unit"},
		{in: "10 K B", wantErr: "unknown unit"},
		{in: "9223372036854775807", want: 1<<63 - 1},
		{in: "9223372036854775808", wantErr: "too large"},
		{in: "8388608TB", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "0s", want: 0},
		{in: "0", want: 0},
		{in: "5s", want: 5 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "1m30s", want: 90 * time.Second},
		{in: "1h", want: time.Hour},
		{in: "10us", want: 10 * time.Microsecond},
		{in: "-1s", wantErr: "negative"},
		{in: "5", wantErr: "invalid duration"},
		{in: "five seconds", wantErr: "invalid duration"},
		{in: "", wantErr: "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseBind(t *testing.T) {
	tests := []struct {
		in       string
		wantHost string
		wantPort int
		wantErr  string
	}{
		{in: "tcp://127.0.0.1:1883", wantHost: "127.0.0.1", wantPort: 1883},
		{in: "tcp://:1883", wantHost: "", wantPort: 1883},
		{in: "tcp://[::]:61613", wantHost: "::", wantPort: 61613},
		{in: "tcp://broker.example.com:0", wantHost: "broker.example.com", wantPort: 0},
		{in: "TCP://localhost:1", wantHost: "localhost", wantPort: 1},
		{in: "127.0.0.1:1883", wantErr: "want scheme://host:port"},
		{in: "tls://127.0.0.1:8883", wantHost: "127.0.0.1", wantPort: 8883},
		{in: "ssl://127.0.0.1:8883", wantErr: "spelled tls://"},
		{in: "ws://127.0.0.1:80", wantHost: "127.0.0.1", wantPort: 80},
		{in: "wss://127.0.0.1:443", wantHost: "127.0.0.1", wantPort: 443},
		{in: "udp://127.0.0.1:1883", wantErr: `unknown scheme "udp"`},
		{in: "tcp://127.0.0.1", wantErr: "want tcp://host:port"},
		{in: "tcp://127.0.0.1:1883/mqtt", wantErr: "no path"},
		{in: "tcp://127.0.0.1:65536", wantErr: "port \"65536\""},
		{in: "tcp://127.0.0.1:mqtt", wantErr: "port \"mqtt\""},
		{in: "tcp://bad_host!:1883", wantErr: "neither an IP address nor a host name"},
		{in: "tcp://-a.b:1883", wantErr: "neither an IP address nor a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			network, host, port, err := parseBind(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseBind(%q) = %v; want error containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || network != "tcp" || host != tt.wantHost || port != tt.wantPort {
				t.Fatalf("parseBind(%q) = %q, %q, %d, %v; want tcp, %q, %d", tt.in, network, host, port, err, tt.wantHost, tt.wantPort)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"max_connections", "bind", "detect"}
	if got := suggest("max_conection", known); got != `; did you mean "max_connections"?` {
		t.Errorf("suggest(max_conection) = %q", got)
	}
	if got := suggest("colour", known); got != "" {
		t.Errorf("suggest(colour) = %q, want no suggestion", got)
	}
}
