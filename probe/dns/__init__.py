"""DNS: queries that keep the raw rcode (`query`), and the resolution of the
names the other checks need (`resolve`), both through the run's resolver."""
