package junit

import (
	"bytes"
	"io"
)

// outputFilter drops <system-out> and <system-err> elements from a JUnit
// stream before the XML decoder sees them, but those of a test case that
// failed (ctest keeps a failure's whole story there): the decoder reads
// character data a byte at a time, so a file whose passing tests log
// output spent most of its time there. The newlines of
// what it drops are kept, so the decoder's line numbers stay the file's.
// CDATA sections and comments inside a dropped element are skipped whole,
// whatever they hold.
type outputFilter struct {
	r     io.Reader
	buf   []byte // read, not yet handled
	out   []byte // handled, not yet returned
	eof   bool
	state filterState
	// closing is the dropped element's closing tag.
	closing []byte
	// slash: the start tag's last byte handled so far is '/' (its '>' may
	// come in the next read, making the element empty).
	slash bool
	// failing: a <failure> or <error> came since the last <testcase>: its
	// output is kept.
	failing bool
}

type filterState int

const (
	passing   filterState = iota
	inStart               // the dropped element's start tag
	inContent             // its content
	inCDATA
	inComment
)

func newOutputFilter(r io.Reader) *outputFilter {
	return &outputFilter{r: r, buf: make([]byte, 0, 64<<10)}
}

// markerRoom is the most bytes a decision looks ahead: "</system-out>".
const markerRoom = 16

func (f *outputFilter) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.eof && len(f.buf) == 0 {
			return 0, io.EOF
		}
		if !f.eof {
			n, err := f.r.Read(f.buf[len(f.buf):cap(f.buf)])
			f.buf = f.buf[:len(f.buf)+n]
			switch {
			case err == io.EOF:
				f.eof = true
			case err != nil:
				return 0, err
			}
		}
		f.step()
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// step handles buf as far as it can decide; it keeps back at most
// markerRoom bytes (while more is to come), so buf never fills.
func (f *outputFilter) step() {
	b := f.buf
	// more reports whether a decision at b[i:] must wait for more input.
	more := func(i int) bool { return !f.eof && len(b)-i < markerRoom }
	i := 0
loop:
	for i < len(b) {
		switch f.state {
		case passing:
			j := bytes.IndexByte(b[i:], '<')
			if j < 0 {
				f.out = append(f.out, b[i:]...)
				i = len(b)
				break loop
			}
			f.out = append(f.out, b[i:i+j]...)
			i += j
			if more(i) {
				break loop
			}
			switch rest := b[i:]; {
			case startsElement(rest, "testcase"), bytes.HasPrefix(rest, []byte("</testcase")):
				f.failing = false
			case startsElement(rest, "failure"), startsElement(rest, "error"):
				f.failing = true
			}
			if c := dropsFrom(b[i:]); c != nil && !f.failing {
				f.state, f.closing, f.slash = inStart, c, false
				i += len("<system-out")
				continue
			}
			f.out = append(f.out, '<')
			i++
		case inStart:
			j := bytes.IndexByte(b[i:], '>')
			if j < 0 {
				f.keepNewlines(b[i:])
				f.slash = b[len(b)-1] == '/'
				i = len(b)
				break loop
			}
			f.keepNewlines(b[i : i+j])
			f.state = inContent
			if (j > 0 && b[i+j-1] == '/') || (j == 0 && f.slash) {
				f.state = passing // <system-out/>
			}
			i += j + 1
		case inContent:
			j := bytes.IndexByte(b[i:], '<')
			if j < 0 {
				f.keepNewlines(b[i:])
				i = len(b)
				break loop
			}
			f.keepNewlines(b[i : i+j])
			i += j
			if more(i) {
				break loop
			}
			switch rest := b[i:]; {
			case bytes.HasPrefix(rest, f.closing):
				f.state = passing
				i += len(f.closing)
			case bytes.HasPrefix(rest, []byte("<![CDATA[")):
				f.state = inCDATA
				i += len("<![CDATA[")
			case bytes.HasPrefix(rest, []byte("<!--")):
				f.state = inComment
				i += len("<!--")
			default:
				i++
			}
		case inCDATA, inComment:
			end := []byte("]]>")
			if f.state == inComment {
				end = []byte("-->")
			}
			j := bytes.Index(b[i:], end)
			if j < 0 {
				// Keep the last bytes: the end may straddle two reads.
				keep := min(len(b)-i, len(end)-1)
				if f.eof {
					keep = 0
				}
				f.keepNewlines(b[i : len(b)-keep])
				i = len(b) - keep
				break loop
			}
			f.keepNewlines(b[i : i+j])
			f.state = inContent
			i += j + len(end)
		}
	}
	if f.eof && i < len(b) {
		// Undecided bytes at the end of the input: passed on as they are.
		if f.state == passing {
			f.out = append(f.out, b[i:]...)
		}
		i = len(b)
	}
	f.buf = b[:copy(b, b[i:])]
}

// dropsFrom returns the closing tag when b starts a <system-out> or
// <system-err> element, else nil.
func dropsFrom(b []byte) []byte {
	for _, name := range []string{"system-out", "system-err"} {
		if startsElement(b, name) {
			return []byte("</" + name + ">")
		}
	}
	return nil
}

// startsElement reports whether b starts the start tag of an element name.
func startsElement(b []byte, name string) bool {
	if len(b) <= len(name)+1 || !bytes.HasPrefix(b[1:], []byte(name)) {
		return false
	}
	switch b[len(name)+1] {
	case '>', ' ', '\t', '\n', '\r', '/':
		return true
	}
	return false
}

func (f *outputFilter) keepNewlines(b []byte) {
	for n := bytes.Count(b, []byte{'\n'}); n > 0; n-- {
		f.out = append(f.out, '\n')
	}
}
