package translate

// ViewBuilds reports how many outbound views t has built, for tests of the
// caching.
func ViewBuilds(t *Translator) int64 { return t.viewBuilds.Load() }
