package junit

import "io"

// repeat is an endless reader of s.
type repeat struct {
	s    string
	read int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.s[(r.read+n)%len(r.s):])
	}
	r.read += n
	return n, nil
}

func ioMulti(rs ...io.Reader) io.Reader { return io.MultiReader(rs...) }
