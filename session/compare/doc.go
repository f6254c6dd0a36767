// Package compare holds tests that run session libraries which store a
// session as one encoded blob (gorilla/sessions, alexedwards/scs) through
// the interleaving in which two requests of one user change different
// values at once, beside cachemgr's session package. It is a module of its
// own so that cachemgr does not depend on those libraries.
package compare
