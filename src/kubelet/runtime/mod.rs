//! Containers through youki's `libcontainer`, each held by a shim process (`k3rs` re-executed)
//! that owns its stdio, writes its log, reaps it and records its exit status, so containers
//! keep running when k3rs stops and are re-adopted when it starts again.
