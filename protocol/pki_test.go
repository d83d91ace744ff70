package protocol_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lyremq/lyre/conf"
)

// pki is a test certificate authority with a server certificate and key written to files.
type pki struct {
	t       *testing.T
	dir     string
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	pool    *x509.CertPool // trusts ca
	serial  int64
	caFile  string
	crtFile string // server certificate
	keyFile string // server key
	// served is the serial number of the server certificate in the files.
	served *big.Int
}

// serverNames are the names the test server certificate covers, SNI names included.
var serverNames = []string{"localhost", "a.example.com", "b.example.com"}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{t: t, dir: t.TempDir(), serial: 1}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(p.serial),
		Subject:               pkix.Name{CommonName: "Lyre Test CA", Organization: []string{"Lyre"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p.caKey = key
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.crtFile = filepath.Join(p.dir, "server.pem")
	p.keyFile = filepath.Join(p.dir, "server-key.pem")
	p.writeServerCert("lyre server")
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue signs a certificate for key with the test CA.
func (p *pki) issue(tmpl *x509.Certificate, key *ecdsa.PrivateKey) []byte {
	p.t.Helper()
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	return der
}

// writeServerCert issues a new server certificate for 127.0.0.1 and serverNames and writes it and its
// key over the server files.
func (p *pki) writeServerCert(cn string) {
	p.t.Helper()
	key := newKey(p.t)
	der := p.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    serverNames,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, key)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	writePEM(p.t, p.crtFile, "CERTIFICATE", der)
	writePEM(p.t, p.keyFile, "EC PRIVATE KEY", kder)
	p.served = big.NewInt(p.serial)
}

// clientCert issues a client certificate with the given subject.
func (p *pki) clientCert(subject pkix.Name) tls.Certificate {
	p.t.Helper()
	key := newKey(p.t)
	der := p.issue(&x509.Certificate{
		Subject:     subject,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsConf is the connector tls block serving the test server certificate.
func (p *pki) tlsConf(clientAuth string) *conf.TLS {
	t := &conf.TLS{CertFile: p.crtFile, KeyFile: p.keyFile, ClientAuth: clientAuth, CertIdentity: "cn"}
	if clientAuth != "" && clientAuth != "none" {
		t.ClientCAFile = p.caFile
	}
	return t
}

// client returns a client configuration trusting the test CA, asking for serverName, presenting certs.
func (p *pki) client(serverName string, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: serverName, Certificates: certs, MinVersion: tls.VersionTLS12}
}
