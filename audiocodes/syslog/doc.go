// Package syslog reads AudioCodes SBC syslog and debug log lines (as sent
// over UDP 514 or as shown by a syslog viewer) and turns them into
// records sbcwatch can correlate: the life of each SIP socket the SBC
// accepted (peer, SocketID, the TLS context it chose, when and how it
// closed) and the SIP messages the SBC logged ("---- Incoming SIP Message
// from ... ----"), reassembled when a long message was split over
// several datagrams of the same session.
//
// Line format (User's Manual "Syslog Message Format"): an optional
// <PRI>, receive time, device address and facility.severity, then
// [S=<seq>] [SID=<mac>:<resets>:<session>] or [BID=...], (N <n>), the
// text, and [Time:DD-MM@HH:MM:SS.mmm], the device's own clock. Every part
// but the text is optional here, so lines copied from a viewer parse too.
// The device clock carries no year and no zone: Options supply them.
//
// Nothing here reads the wall clock; the same lines give the same records.
package syslog
