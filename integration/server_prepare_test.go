package integration

import "testing"

// TestPerlServerPrepare: Perl with server-side prepared statements.
func TestPerlServerPrepare(t *testing.T) {
	for _, d := range perlDrivers {
		t.Run(d, func(t *testing.T) {
			s := startServer(t)
			out := s.perl(t, d, "server_prepare.pl")
			if !tapPlan.MatchString(out) || tapNotOK.MatchString(out) {
				t.Fatalf("incomplete or failing TAP:\n%s", out)
			}
		})
	}
}
