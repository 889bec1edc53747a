// Package cert loads and creates the certificates the relay serves.
//
// Two sources are supported:
//
//   - `ferry-relay --dev` keeps a throwaway certificate authority (DevCA) and a server
//     certificate it signed in its data directory, creating them on first start and
//     reusing them afterwards, so agents only have to trust ca.pem once.
//   - In production the operator passes --tls-cert/--tls-key; LoadKeyPair reads them with
//     errors that name the flag, the file, the problem and the fix.
//
// Every key this package generates is ECDSA P-256 and is written as PKCS#8 PEM with mode 0600.
package cert
