# stand-in for the remote-code media helpers
