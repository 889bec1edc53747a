package cert

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what the management API accepts from a user.
const (
	// MaxUploadPEMSize is the largest certificate_pem, private_key_pem or ca_pem accepted, in bytes.
	MaxUploadPEMSize = 256 << 10
	// MaxBundleCerts is the most certificates a certificate_pem bundle may hold: the leaf, its
	// intermediates and optionally the root.
	MaxBundleCerts = 10
)

// Field names that BundleError.Field takes: the management API's JSON fields.
const (
	FieldCertificatePEM = "certificate_pem"
	FieldPrivateKeyPEM  = "private_key_pem"
	FieldCAPEM          = "ca_pem"
)

// BundleError is why ParseBundle or ParseCertificateAuthority refused an upload. Field names
// the API field at fault (FieldCertificatePEM, FieldPrivateKeyPEM or FieldCAPEM) so an API can
// point at it; Msg says which certificate or PEM block is wrong, why, and what to do.
type BundleError struct {
	Field string
	Msg   string
}

func (e *BundleError) Error() string { return e.Field + ": " + e.Msg }

// fieldError returns a *BundleError for field; it is never nil.
func fieldError(field, format string, args ...any) error {
	return &BundleError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// uploadBlock is one PEM block of an upload and where it was found, for error messages.
type uploadBlock struct {
	*pem.Block
	num  int // 1-based position among the field's PEM blocks
	line int // line of its -----BEGIN line
}

func (b uploadBlock) where() string { return fmt.Sprintf("PEM block %d (line %d)", b.num, b.line) }

var pemBeginLine = []byte("-----BEGIN ")

// beginIndex returns the offset of the first "-----BEGIN " at the start of a line in data, or -1.
// It matches what pem.Decode accepts as a BEGIN line.
func beginIndex(data []byte) int {
	if bytes.HasPrefix(data, pemBeginLine) {
		return 0
	}
	i := bytes.Index(data, []byte("\n-----BEGIN "))
	if i < 0 {
		return -1
	}
	return i + 1
}

// checkUploadSize refuses an empty or oversized field. what describes the expected content.
func checkUploadSize(field string, data []byte, what string) error {
	if len(data) > MaxUploadPEMSize {
		return fieldError(field, "%d bytes is too large; at most %d bytes (%d KiB) are accepted", len(data), MaxUploadPEMSize, MaxUploadPEMSize>>10)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fieldError(field, "empty; paste %s", what)
	}
	return nil
}

// scanUploadPEM splits data into its PEM blocks, in order. Text before a block is allowed
// (openssl writes "subject=" and "Bag Attributes" lines there, RFC 7468 §5.2). A damaged or
// unterminated block and text after the last block are refused: both are what a truncated
// or mangled paste looks like, and pem.Decode alone would skip them silently, dropping a
// certificate. Indentation is removed first (pem.Decode does not read indented blocks, and
// PEM copied out of YAML or JSON often is). Data without any BEGIN line gives no blocks and
// no error; the caller says what it expected. It runs in time linear in len(data).
func scanUploadPEM(field string, data []byte) ([]uploadBlock, error) {
	data = dedent(data)
	var blocks []uploadBlock
	off, offLine := 0, 1 // offLine is the line number of data[off]
	for {
		rem := data[off:]
		start := beginIndex(rem)
		if start < 0 {
			if i := markerIndex(rem); i >= 0 {
				return nil, strayMarker(field, rem[i:], offLine+countLines(rem[:i]))
			}
			if len(blocks) > 0 && len(bytes.TrimSpace(rem)) > 0 {
				line, text := firstTextLine(rem, offLine)
				return nil, fieldError(field, "unexpected text after the last PEM block, at line %d: %s; remove it (a truncated or mangled paste looks like this)", line, text)
			}
			return blocks, nil
		}
		if i := markerIndex(rem[:start]); i >= 0 {
			return nil, strayMarker(field, rem[i:], offLine+countLines(rem[:i]))
		}
		num, line := len(blocks)+1, offLine+countLines(rem[:start])
		b, rest := pem.Decode(rem[start:])
		consumed := rem[start : len(rem)-len(rest)]
		// pem.Decode skips a block it cannot decode and returns the next good one, if any.
		if b == nil || beginIndex(consumed[1:]) >= 0 {
			return nil, fieldError(field, "PEM block %d (line %d) is damaged or incomplete: no matching -----END----- line, or its base64 is broken; paste the whole block again", num, line)
		}
		blocks = append(blocks, uploadBlock{Block: b, num: num, line: line})
		off, offLine = off+start+len(consumed), line+countLines(consumed)
	}
}

// markerIndex returns the offset of the first "-----BEGIN" or "-----END" in text that
// pem.Decode did not take as part of a block, or -1.
func markerIndex(text []byte) int {
	i := bytes.Index(text, []byte("-----BEGIN"))
	if j := bytes.Index(text, []byte("-----END")); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	return i
}

// strayMarker refuses the BEGIN or END marker text starts with, on line line, which belongs
// to no readable block.
func strayMarker(field string, text []byte, line int) error {
	excerpt, _, _ := bytes.Cut(text, []byte("\n"))
	return fieldError(field, "PEM text at line %d (%s) is damaged: a -----BEGIN or -----END line without its partner, or not at the start of its line; paste the whole block again", line, quoteExcerpt(string(bytes.TrimSpace(excerpt))))
}

// dedent removes the spaces and tabs at the start of every line.
func dedent(data []byte) []byte {
	out := make([]byte, 0, len(data))
	for line := range bytes.Lines(data) {
		out = append(out, bytes.TrimLeft(line, " \t")...)
	}
	return out
}

func countLines(b []byte) int { return bytes.Count(b, []byte("\n")) }

// firstTextLine returns the line number and a short quoted excerpt of the first line of
// text that holds more than white space; text starts on line firstLine.
func firstTextLine(text []byte, firstLine int) (int, string) {
	skip := len(text) - len(bytes.TrimLeftFunc(text, unicode.IsSpace))
	line, _, _ := bytes.Cut(text[skip:], []byte("\n"))
	return firstLine + countLines(text[:skip]), quoteExcerpt(string(bytes.TrimSpace(line)))
}

// quoteExcerpt quotes s, cut to at most 40 bytes, for quoting user input in errors.
func quoteExcerpt(s string) string {
	const max = 40
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// noCertificateBlock explains why data, which holds no PEM block at all, is not a certificate.
func noCertificateBlock(field string, data []byte) error {
	const msg = `no PEM "CERTIFICATE" block found`
	switch {
	case isDERCert(data):
		return fieldError(field, "%s: this looks like a DER (binary) certificate; convert it with: openssl x509 -inform der -in cert.der -out cert.pem", msg)
	case isBareBase64Certificate(data):
		return fieldError(field, "%s: this looks like a base64 certificate without its -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- lines; add them", msg)
	default:
		return fieldError(field, "%s; paste PEM text where each certificate starts with -----BEGIN CERTIFICATE-----", msg)
	}
}

func isBareBase64Certificate(data []byte) bool {
	compact := bytes.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, data)
	der, err := base64.StdEncoding.DecodeString(string(compact))
	return err == nil && isDERCert(der)
}

// notACertificate explains a PEM block that is not a CERTIFICATE in a field of certificates.
func notACertificate(field string, b uploadBlock) error {
	switch {
	case strings.HasSuffix(b.Type, "PRIVATE KEY"):
		fix := "it belongs in private_key_pem"
		if field == FieldCAPEM {
			fix = "remove it: a certificate authority is uploaded without its private key"
		}
		return fieldError(field, "%s is a private key (%q), not a certificate; %s", b.where(), b.Type, fix)
	case b.Type == "CERTIFICATE REQUEST" || b.Type == "NEW CERTIFICATE REQUEST":
		return fieldError(field, "%s is a certificate signing request (%q), not a certificate; upload the certificate your CA issued for it", b.where(), b.Type)
	case b.Type == "TRUSTED CERTIFICATE":
		return fieldError(field, `%s is an OpenSSL "TRUSTED CERTIFICATE"; convert it to a plain certificate with: openssl x509 -in cert.pem -out plain.pem`, b.where())
	default:
		return fieldError(field, `%s is a %q block, not a "CERTIFICATE"; %s takes only CERTIFICATE blocks`, b.where(), b.Type, field)
	}
}

// uploadText makes user-supplied text safe and short for an error message: quoted if it holds
// characters that are not printable, cut if long.
func uploadText(s string) string {
	const max = 80
	printable := utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
	if !printable {
		return quoteExcerpt(s)
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
