// Sizes libuv's thread pool, which carries every file read, write and fdatasync. Imported first by
// main.ts: libuv reads UV_THREADPOOL_SIZE once, when the pool first starts, so this must run
// before any file I/O.
//
// Default: one thread per CPU, at least 2 (libuv's own default is 4). Each request crosses to a
// pool thread and back; with more threads than cores, idle threads are woken and put to sleep for
// almost every request, and those context switches cost more than the reads from the page cache
// they carry. Measured on 2 cores (docs/PERFORMANCE.md): 2 threads instead of 4 served 4 KiB
// requests 4-20 % faster with 6-21 % less CPU, FLUSH-heavy writes included. Storage that needs
// many requests in flight to be fast (cold data on NVMe, network block devices) wants more:
// set UV_THREADPOOL_SIZE yourself and it is left alone.
import { availableParallelism } from 'node:os';

process.env.UV_THREADPOOL_SIZE ??= String(Math.max(2, availableParallelism()));
