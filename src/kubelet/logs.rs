//! Container logs in the CRI format (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`), as the
//! shim writes them under `/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`, and the
//! reader behind `kubectl logs` (tail, since, timestamps, follow).
