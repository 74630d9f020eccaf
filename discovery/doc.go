// Package discovery finds kubectl plugins exactly as kubectl does, reports
// kubectl's warnings as data, and infers each plugin's parameters from its
// --help, cached by file identity.
package discovery
