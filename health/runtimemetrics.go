package health

import (
	"runtime"
	"time"
)

// The Go runtime's and the process's own series, under the names
// client_golang's Go and process collectors use, so that existing
// dashboards and queries (go_goroutines, process_resident_memory_bytes)
// keep working. A subset: the ones an operator of a gateway reads.
var (
	descGoGoroutines = gaugeDesc("go_goroutines", "Number of goroutines that currently exist.")
	descGoThreads    = gaugeDesc("go_threads", "Number of OS threads created.")
	descGoInfo       = gaugeDesc("go_info", "Information about the Go environment.", "version")
	descGoAlloc      = gaugeDesc("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.")
	descGoAllocTotal = counterDesc("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already.")
	descGoMallocs    = counterDesc("go_memstats_mallocs_total", "Total number of heap objects allocated.")
	descGoFrees      = counterDesc("go_memstats_frees_total", "Total number of heap objects frees.")
	descGoHeapInuse  = gaugeDesc("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.")
	descGoHeapIdle   = gaugeDesc("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used.")
	descGoHeapObj    = gaugeDesc("go_memstats_heap_objects", "Number of currently allocated objects.")
	descGoSys        = gaugeDesc("go_memstats_sys_bytes", "Number of bytes obtained from system.")
	descGoNextGC     = gaugeDesc("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.")
	descGoLastGC     = gaugeDesc("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.")
	descGoGCCycles   = counterDesc("go_gc_cycles_total", "Completed garbage collection cycles.")
	descGoGCPause    = counterDesc("go_gc_pause_seconds_total", "Total stop-the-world pause time of garbage collections.")

	descProcStart = gaugeDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
	descProcCPU   = counterDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
	descProcRSS   = gaugeDesc("process_resident_memory_bytes", "Resident memory size in bytes.")
	descProcVSZ   = gaugeDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.")
	descProcFDs   = gaugeDesc("process_open_fds", "Number of open file descriptors.")
	descProcMaxFD = gaugeDesc("process_max_fds", "Maximum number of open file descriptors.")
)

// collectGo adds the runtime's series. ReadMemStats stops the world for
// microseconds; a scrape is rare enough.
func collectGo(e *exposition) {
	e.gauge(descGoGoroutines, float64(runtime.NumGoroutine()))
	threads, _ := runtime.ThreadCreateProfile(nil)
	e.gauge(descGoThreads, float64(threads))
	e.gauge(descGoInfo, 1, runtime.Version())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	e.gauge(descGoAlloc, float64(ms.Alloc))
	e.counter(descGoAllocTotal, ms.TotalAlloc)
	e.counter(descGoMallocs, ms.Mallocs)
	e.counter(descGoFrees, ms.Frees)
	e.gauge(descGoHeapInuse, float64(ms.HeapInuse))
	e.gauge(descGoHeapIdle, float64(ms.HeapIdle))
	e.gauge(descGoHeapObj, float64(ms.HeapObjects))
	e.gauge(descGoSys, float64(ms.Sys))
	e.gauge(descGoNextGC, float64(ms.NextGC))
	e.gauge(descGoLastGC, float64(ms.LastGC)/1e9)
	e.counter(descGoGCCycles, uint64(ms.NumGC))
	e.add(descGoGCPause, time.Duration(ms.PauseTotalNs).Seconds())
}
