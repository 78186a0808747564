"""The sans-I/O wallbox: no sockets, no sleeps, no clock reads; time is passed in."""
