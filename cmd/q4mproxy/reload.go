package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// handleReloads reloads the users and the TLS certificate on each SIGHUP
// until the returned function is called.
func (m *Main) handleReloads() (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-hup:
				m.reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}

// reload re-reads --users-file and --tls-cert/--tls-key, all or nothing:
// new logins check the new users and passwords and new TLS connections get
// the new certificate; established sessions go on as they were. If a file
// cannot be read or parsed, the previous settings stay and an error is
// logged.
func (m *Main) reload() {
	start := time.Now()
	users, err := m.users()
	var cert *tls.Certificate
	if err == nil && m.TLSCert != "" {
		cert, err = m.loadCert()
	}
	if err != nil {
		m.log.Error("reload failed", "err", err, "kept", "the previous users and certificate")
		return
	}
	m.srv.SetUsers(users)
	attrs := []any{"users", len(users)}
	if cert != nil {
		m.cert.Store(cert)
		attrs = append(attrs, "tls_cert_sha256", certFingerprint(cert), "tls_cert_expires", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	m.log.Info("reloaded", append(attrs, "duration", time.Since(start).Round(time.Microsecond))...)
}

// loadCert reads --tls-cert and --tls-key.
func (m *Main) loadCert() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(m.TLSCert, m.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return &cert, nil
}

// certFingerprint is the SHA-256 of the certificate's DER, in hex (as
// `openssl x509 -fingerprint -sha256` shows it, without the colons).
func certFingerprint(c *tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}
