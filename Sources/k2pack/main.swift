import K2PackCLI

// The commands live in the K2PackCLI library (parsed and tested in-process); this is only the entry point.
K2Pack.main()
