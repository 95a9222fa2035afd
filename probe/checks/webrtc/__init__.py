"""The `webrtc` check (`check`), its signalling (`signal`) and its statistics (`stats`)."""
