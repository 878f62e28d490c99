package testingutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// SelfSigned returns a fresh self-signed certificate for 127.0.0.1, valid
// for an hour either side of now, and its ECDSA P-256 key, both PEM.
func SelfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "q4mproxy test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// BadHandshake logs in to the MySQL server at addr (over TLS if useTLS,
// after the SSL request; the certificate is not verified) as root with a
// handshake response that announces announced bytes of auth data and
// holds 2, and returns the server's answer, or the error reading one.
// Each step has timeout to finish.
func BadHandshake(t testing.TB, addr string, useTLS bool, announced byte, timeout time.Duration) ([]byte, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	readPacket := func(r io.Reader) ([]byte, error) {
		var h [4]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, err
		}
		p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
		_, err := io.ReadFull(r, p)
		return p, err
	}
	if _, err := readPacket(c); err != nil { // the greeting
		t.Fatal(err)
	}
	var capab uint32 = 0x200 | 0x8000 | 0x8 | 0x80000 // protocol 41, secure connection, with db, plugin auth
	if useTLS {
		capab |= 0x800 // SSL
	}
	head := []byte{byte(capab), byte(capab >> 8), byte(capab >> 16), 0, 0, 0, 0, 1, 33}
	head = append(head, make([]byte, 23)...)
	var rw io.ReadWriter = c
	seq := byte(1)
	if useTLS {
		if _, err := c.Write(append([]byte{byte(len(head)), 0, 0, seq}, head...)); err != nil { // the SSL request
			t.Fatal(err)
		}
		seq++
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		rw = tc
	}
	payload := append(append(head, "root\x00"...), announced, 'a', 'b')
	if _, err := rw.Write(append([]byte{byte(len(payload)), 0, 0, seq}, payload...)); err != nil {
		t.Fatal(err)
	}
	return readPacket(rw)
}
