//! Discovery: the built-in resources, their names, kinds, verbs and short names.
