//! twillctl as a library: resource commands, IPAM, BGP status and the lab.
