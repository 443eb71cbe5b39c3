// tlogcheck reads the audit log `aztp serve` publishes as C2SP tiles with Go's own
// transparency-log code, golang.org/x/mod/sumdb/tlog (the checksum database's, an
// implementation aztp did not write), and checks it: the tree hash computed from the tiles is
// the checkpoint's root, the tiles it reads are proven against that root (TileHashReader checks
// them), record proofs of a few entries check against their entries from the entry bundles,
// and a tree proof of an earlier size checks.
//
// Go's sumdb paths carry the tile height (tile/8/L/N); C2SP's omit it (tile/L/N): the
// TileReader maps one to the other.
//
//	TLOG_URL=https://127.0.0.1:8443/v1/audit/tlog TLOG_KEY=aztp_... TLOG_CA=bundle.pem \
//	  GOPATH=/usr/share/gocode GO111MODULE=off go run test/go/tlogcheck/main.go
//
// Prints {"size":N,"proven":K} as its last line; exits 1 on any failure.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

type server struct {
	base   string
	key    string
	client *http.Client
}

func (s *server) get(path string) ([]byte, error) {
	req, err := http.NewRequest("GET", s.base+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body, nil
}

// tiles is a tlog.TileReader over the served C2SP tiles.
type tiles struct{ s *server }

func (t tiles) Height() int { return 8 }

func (t tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		// tile/8/L/N[.p/W] -> tile/L/N[.p/W]
		path := strings.Replace(tile.Path(), "tile/8/", "tile/", 1)
		data, err := t.s.get(path)
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t tiles) SaveTiles([]tlog.Tile, [][]byte) {}

// entry reads entry n from its bundle (uint16 big-endian length-prefixed entries).
func entry(s *server, size, n int64) ([]byte, error) {
	bundle := tlog.Tile{H: 8, L: -1, N: n / 256, W: 256}
	if (n/256+1)*256 > size {
		bundle.W = int(size - n/256*256)
	}
	path := strings.Replace(bundle.Path(), "tile/8/data/", "tile/entries/", 1)
	data, err := s.get(path)
	if err != nil {
		return nil, err
	}
	for i := int64(0); len(data) >= 2; i++ {
		l := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+l {
			return nil, fmt.Errorf("bundle %s: truncated", path)
		}
		if i == n%256 {
			return data[2 : 2+l], nil
		}
		data = data[2+l:]
	}
	return nil, fmt.Errorf("bundle %s: no entry %d", path, n)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	pem, err := os.ReadFile(os.Getenv("TLOG_CA"))
	if err != nil {
		fail("%v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fail("no certificate in %s", os.Getenv("TLOG_CA"))
	}
	s := &server{
		base:   strings.TrimRight(os.Getenv("TLOG_URL"), "/"),
		key:    os.Getenv("TLOG_KEY"),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}},
	}

	note, err := s.get("checkpoint")
	if err != nil {
		fail("%v", err)
	}
	// The checkpoint body: origin, size, base64 root (c2sp.org/tlog-checkpoint).
	text := note[:bytes.Index(note, []byte("\n\n"))+1]
	lines := strings.Split(string(text), "\n")
	if len(lines) < 4 {
		fail("checkpoint: %q", text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root: %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}
	hr := tlog.TileHashReader(tree, tiles{s})

	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("TreeHash: %v", err)
	}
	if th != root {
		fail("TreeHash %v, checkpoint root %v", th, root)
	}

	proven := 0
	for _, n := range []int64{0, 1, 255, 256, size / 2, size - 1} {
		if n < 0 || n >= size {
			continue
		}
		p, err := tlog.ProveRecord(size, n, hr)
		if err != nil {
			fail("ProveRecord(%d): %v", n, err)
		}
		data, err := entry(s, size, n)
		if err != nil {
			fail("%v", err)
		}
		if err := tlog.CheckRecord(p, size, root, n, tlog.RecordHash(data)); err != nil {
			fail("CheckRecord(%d): %v", n, err)
		}
		// A proof for another entry's bytes must not check.
		if err := tlog.CheckRecord(p, size, root, n, tlog.RecordHash(append([]byte("x"), data...))); err == nil {
			fail("CheckRecord(%d) accepted other bytes", n)
		}
		proven++
	}

	if size > 37 {
		old := size - 37
		oldHash, err := tlog.TreeHash(old, hr)
		if err != nil {
			fail("TreeHash(%d): %v", old, err)
		}
		p, err := tlog.ProveTree(size, old, hr)
		if err != nil {
			fail("ProveTree: %v", err)
		}
		if err := tlog.CheckTree(p, size, root, old, oldHash); err != nil {
			fail("CheckTree: %v", err)
		}
	}

	out, _ := json.Marshal(map[string]int64{"size": size, "proven": int64(proven)})
	fmt.Println(string(out))
}
