"""Wire formats: pure codecs, no sockets (STUN, SIP, SDP, the throttle
replay's session token and call-traffic profiles)."""
