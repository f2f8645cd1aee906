// Writing a file's dirty pages back while it is still being written, so that the final
// flush has only the tail left: the kernel would otherwise hold a whole 1 GiB image in the
// page cache until that flush (its background writeback begins at 10 % of memory). Node
// has no sync_file_range: an fdatasync in the thread pool, at most one at a time, every
// `every` bytes, does the job. Used for disk 0 (also for a decompressor writing a file disk
// itself: lib/disk/direct.ts) and for the download cache's temporary file. Measured with
// the bench's 1 GiB images (medians), disk 0 every 256 MiB: raw+gz 1.60 s instead of
// 1.79 s onto a loop device, 1.65 s instead of 1.78 s onto a file; multi-block raw+xz
// 4.47 s instead of 4.67 s (loop), 3.48 s instead of 3.60 s (file, xz writing it); the
// final flush went from 0.11-0.26 s to 0.00-0.06 s.
export class Writeback {
  private pending: Promise<void> = Promise.resolve()
  private busy = false
  private started = 0
  private failed: unknown
  private finished = false
  /** `sync(early)` flushes the file, rejecting with the failure to report. */
  constructor(private readonly sync: (early: boolean) => Promise<void>, private readonly every: number) {}

  /** `position` bytes are written (or handed to the kernel): flushes early when due. A
   *  failed early flush is thrown here, so that a writer stops instead of writing the
   *  rest of the image into a file that cannot take it. */
  reached(position: number): void {
    if (this.failed) throw this.failed
    if (this.finished || this.busy || position - this.started < this.every) return
    this.started = position
    this.busy = true
    // chained: a failed flush stays failed for finish(); the kernel reports a writeback
    // error to one fsync only, and that may have been this one
    this.pending = this.pending.then(() => this.sync(true)).finally(() => (this.busy = false))
    this.pending.catch((err: unknown) => (this.failed ??= err))
  }

  /** The final flush, after any early one: the data is durable when this resolves. */
  async finish(): Promise<void> {
    this.finished = true // a late progress poll (lib/disk/direct.ts) starts no flush after this
    await this.pending
    await this.sync(false)
  }
}
