package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// pkt is one protocol packet: header (sequence seq) and payload.
func pkt(seq byte, payload ...byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

func okPacket(status uint16) []byte {
	return []byte{0x00, 1, 0, byte(status), byte(status >> 8), 0, 0}
}

func eofPacket(status uint16) []byte {
	return []byte{0xfe, 0, 0, byte(status), byte(status >> 8)}
}

func colDef(name string) []byte {
	return (&mysql.Field{Name: []byte(name), Type: mysql.MYSQL_TYPE_VAR_STRING}).Dump()
}

// recorder is a Client keeping what it is sent; file is the LOCAL INFILE
// contents it sends back.
type recorder struct {
	got  [][]byte
	file [][]byte
}

func (r *recorder) WritePacket(p []byte) error {
	r.got = append(r.got, append([]byte(nil), p[4:]...))
	return nil
}

func (r *recorder) ReadPacket() ([]byte, error) {
	if len(r.file) == 0 {
		return nil, io.EOF
	}
	p := r.file[0]
	r.file = r.file[1:]
	return p, nil
}

// relay runs one COM_QUERY against a scripted upstream that answers with
// answer, and returns what the client got and what the upstream read
// after the command.
func relay(t *testing.T, c *recorder, answer []byte) (Result, [][]byte) {
	t.Helper()
	return relayClient(t, c, answer)
}

// relayClient is relay to any Client.
func relayClient(t *testing.T, c Client, answer []byte) (Result, [][]byte) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := &Session{cfg: &Config{}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), conn: client, stmts: map[uint32]uint32{}}
	type read struct{ pkts [][]byte }
	done := make(chan read, 1)
	go func() {
		defer server.Close()
		br := bufio.NewReader(server)
		var r read
		hdr := make([]byte, 4)
		for {
			if _, err := io.ReadFull(br, hdr); err != nil {
				done <- r
				return
			}
			p := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
			if _, err := io.ReadFull(br, p); err != nil {
				done <- r
				return
			}
			r.pkts = append(r.pkts, p)
			if len(r.pkts) == 1 { // the command: answer it all
				if _, err := server.Write(answer); err != nil {
					done <- r
					return
				}
			}
			if len(p) == 0 { // end of a LOCAL INFILE file: the final OK
				_, _ = server.Write(pkt(5, okPacket(mysql.SERVER_STATUS_AUTOCOMMIT)...))
			}
		}
	}()
	if err := s.writeCommand(mysql.COM_QUERY, []byte("q")); err != nil {
		t.Fatal(err)
	}
	res, err := s.relayResult(c, true)
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	return res, (<-done).pkts
}

func TestRelayResult(t *testing.T) {
	const ac, more, inTrans = mysql.SERVER_STATUS_AUTOCOMMIT, mysql.SERVER_MORE_RESULTS_EXISTS, mysql.SERVER_STATUS_IN_TRANS
	row := []byte{1, 'x'}
	t.Run("results then OK", func(t *testing.T) {
		var answer bytes.Buffer
		answer.Write(pkt(1, 1))                       // one column
		answer.Write(pkt(2, colDef("a")...))          // its definition
		answer.Write(pkt(3, eofPacket(ac|more)...))   // end of definitions
		answer.Write(pkt(4, row...))                  // a row
		answer.Write(pkt(5, eofPacket(ac|more)...))   // end of rows, more results
		answer.Write(pkt(6, okPacket(ac|inTrans)...)) // the last result: an OK
		c := &recorder{}
		res, _ := relay(t, c, answer.Bytes())
		if res.Err != nil || len(c.got) != 6 {
			t.Fatalf("relayed %d packets, %v; want 6", len(c.got), res.Err)
		}
	})
	t.Run("error among the rows", func(t *testing.T) {
		var answer bytes.Buffer
		answer.Write(pkt(1, 1))
		answer.Write(pkt(2, colDef("a")...))
		answer.Write(pkt(3, eofPacket(ac)...))
		answer.Write(pkt(4, row...))
		answer.Write(pkt(5, append([]byte{0xff, 0x25, 0x05, '#'}, "70100Query execution was interrupted"...)...))
		c := &recorder{}
		res, _ := relay(t, c, answer.Bytes())
		if res.Err == nil || res.Err.Code != 1317 || res.Err.State != "70100" || len(c.got) != 5 {
			t.Fatalf("error %v after %d packets; want 1317 (70100) after 5", res.Err, len(c.got))
		}
	})
	t.Run("LOCAL INFILE", func(t *testing.T) {
		c := &recorder{file: [][]byte{[]byte("1\n2\n"), {}}}
		res, up := relay(t, c, pkt(1, append([]byte{0xfb}, "/tmp/f"...)...))
		if res.Err != nil || len(c.got) != 2 || c.got[1][0] != 0x00 {
			t.Fatalf("client got %q, %v; want the request and an OK", c.got, res.Err)
		}
		if len(up) != 3 || string(up[1]) != "1\n2\n" || len(up[2]) != 0 {
			t.Fatalf("upstream read %q; want the command, the file and an empty packet", up)
		}
	})
	t.Run("rows of every size", func(t *testing.T) {
		// Rows smaller and larger than the read buffer, and one larger
		// than a packet (two physical packets): each reaches the client
		// as it was sent.
		var answer bytes.Buffer
		var want [][]byte
		seq := byte(1)
		add := func(p []byte) {
			for {
				n := min(len(p), maxPayload)
				answer.Write(pkt(seq, p[:n]...))
				want = append(want, p[:n])
				seq++
				p = p[n:]
				if n < maxPayload {
					return
				}
			}
		}
		add([]byte{1})
		add(colDef("a"))
		add(eofPacket(ac))
		sizes := []int{1, 70000, 300, 200000, 3, maxPayload + 5, 10}
		for i := range 3000 { // packets that straddle the ends of reads
			sizes = append(sizes, i*7%1500)
		}
		for i, n := range sizes {
			v := bytes.Repeat([]byte{byte('a' + i%26)}, n)
			add(append([]byte{0xfe, byte(n), byte(n >> 8), byte(n >> 16), 0, 0, 0, 0, 0}, v...))
		}
		add(eofPacket(ac))
		c := &recorder{}
		res, _ := relay(t, c, answer.Bytes())
		if res.Err != nil || len(c.got) != len(want) {
			t.Fatalf("relayed %d packets, %v; want %d", len(c.got), res.Err, len(want))
		}
		for i := range want {
			if !bytes.Equal(c.got[i], want[i]) {
				t.Fatalf("packet %d: %d bytes differ from the %d sent", i, len(c.got[i]), len(want[i]))
			}
		}
	})
	t.Run("open cursor", func(t *testing.T) {
		var answer bytes.Buffer
		answer.Write(pkt(1, 1))
		answer.Write(pkt(2, colDef("a")...))
		answer.Write(pkt(3, eofPacket(ac|mysql.SERVER_STATUS_CURSOR_EXISTS)...)) // rows come with COM_STMT_FETCH
		c := &recorder{}
		if res, _ := relay(t, c, answer.Bytes()); res.Err != nil || len(c.got) != 3 {
			t.Fatalf("relayed %d packets, %v; want 3", len(c.got), res.Err)
		}
	})
}

// TestNoteQuery: what a reconnect would lose makes the session sticky;
// session SETs are kept for replay.
func TestNoteQuery(t *testing.T) {
	for _, tc := range []struct {
		q              string
		sticky, replay bool
	}{
		{"SET @a = 1", true, false},
		{"SELECT @b := 2", true, false},
		{"SELECT 1 INTO @c", true, false},
		{"CREATE TEMPORARY TABLE t (a INT)", true, false},
		{"LOCK TABLES t WRITE", true, false},
		{"SELECT GET_LOCK('x', 1)", true, false},
		{"PREPARE s FROM 'SELECT 1'", true, false},
		{"/* c */ SET time_zone = '+00:00'", false, true},
		{"SET NAMES utf8mb4", false, true},
		{"SELECT * FROM t", false, false},
	} {
		s := &Session{}
		s.noteQuery(tc.q)
		if s.sticky != tc.sticky || (len(s.replay) == 1) != tc.replay {
			t.Errorf("%q: sticky %v, replay %q; want sticky %v, replay %v", tc.q, s.sticky, s.replay, tc.sticky, tc.replay)
		}
	}
}

// TestRowStream: QueryRows's decoder takes a result set packet by packet:
// NULL and empty values apart, a row larger than one physical packet put
// together, and after a callback fails the rest read and dropped.
func TestRowStream(t *testing.T) {
	const ac = mysql.SERVER_STATUS_AUTOCOMMIT
	big := bytes.Repeat([]byte{'y'}, maxPayload) // with its length prefix, more than one packet
	bigRow := append(append([]byte{0xfd, byte(len(big)), byte(len(big) >> 8), byte(len(big) >> 16)}, big...), 0xfb)
	var answer bytes.Buffer
	answer.Write(pkt(1, 2))
	answer.Write(pkt(2, colDef("a")...))
	answer.Write(pkt(3, colDef("b")...))
	answer.Write(pkt(4, eofPacket(ac)...))
	answer.Write(pkt(5, 1, 'x', 0xfb))           // 'x', NULL
	answer.Write(pkt(6, 0, 1, 'z'))              // '', 'z'
	answer.Write(pkt(7, bigRow[:maxPayload]...)) // a row in two packets
	answer.Write(pkt(8, bigRow[maxPayload:]...)) //
	answer.Write(pkt(9, 1, 'w', 1, 'v'))         // after the failure: dropped
	answer.Write(pkt(10, eofPacket(ac)...))      //
	var names []string
	var got [][2]string
	fail := errors.New("refused")
	st := &rowStream{
		cols: func(c []string) error { names = c; return nil },
		row: func(v [][]byte) error {
			show := func(b []byte) string {
				switch {
				case b == nil:
					return "NULL"
				case len(b) > 8:
					return fmt.Sprintf("%d bytes", len(b))
				}
				return "'" + string(b) + "'"
			}
			got = append(got, [2]string{show(v[0]), show(v[1])})
			if len(got) == 3 {
				return fail
			}
			return nil
		},
	}
	res, _ := relayClient(t, st, answer.Bytes())
	if res.Err != nil || st.err != fail {
		t.Fatalf("result %v, stream error %v; want the callback's", res.Err, st.err)
	}
	want := [][2]string{{"'x'", "NULL"}, {"''", "'z'"}, {fmt.Sprintf("%d bytes", maxPayload), "NULL"}}
	if fmt.Sprint(names) != "[a b]" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("columns %v, rows %v; want [a b], %v", names, got, want)
	}
}
