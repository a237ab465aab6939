/**
 * Binary layouts and defaults of the commit log, defined once. Every integer on disk is
 * big-endian. Offsets and timestamps are non-negative safe integers stored as u64.
 *
 * Record (one per message, back to back in a `.log` file):
 * ```
 *  0  u32  size        bytes of the whole record, this field included
 *  4  u32  crc         CRC-32 (zlib) of bytes [8, size)
 *  8  u8   magic       RECORD_MAGIC
 *  9  u8   flags       bit 0: key present
 * 10  u64  offset
 * 18  u64  timestamp   ms since the epoch
 * 26  u64  term        replication term/epoch given by the consensus layer
 * 34  u32  keyLength   0 when the key is absent (see flags)
 * 38  u32  valueLength
 * 42  u16  headerCount
 * 44  key bytes, value bytes, then per header: u16 nameLength, UTF-8 name, u32 length, bytes
 * ```
 * Offset index entry (`.index`, sparse): `u32 relativeOffset, u32 position, u32 crc`.
 * Time index entry (`.timeindex`, sparse): `u64 maxTimestamp, u32 relativeOffset, u32 crc`.
 * Each entry's CRC-32 covers its other bytes, so a damaged entry is always noticed (and the
 * file rebuilt from the log).
 */

/** Byte position of each field of a record header. */
export const REC = {
  SIZE: 0,
  CRC: 4,
  MAGIC: 8,
  FLAGS: 9,
  OFFSET: 10,
  TIMESTAMP: 18,
  TERM: 26,
  KEY_LENGTH: 34,
  VALUE_LENGTH: 38,
  HEADER_COUNT: 42,
  /** Size of the fixed header; the key starts here. */
  HEADER_SIZE: 44,
  /** The CRC covers bytes from here to the end of the record. */
  CRC_START: 8,
} as const

/** Format version byte of every record. */
export const RECORD_MAGIC = 1
/** Flag bit: the record has a key (a zero-length key is distinct from no key). */
export const FLAG_HAS_KEY = 1
/** Bytes of a header name's length prefix (u16). */
export const HEADER_NAME_LENGTH_SIZE = 2
/** Bytes of a header value's length prefix (u32). */
export const HEADER_VALUE_LENGTH_SIZE = 4
/** Most headers one record may carry (u16 count). */
export const MAX_HEADERS = 0xffff

/** Offset index entry layout (CRC over bytes [0, CRC)). */
export const IDX = { REL_OFFSET: 0, POSITION: 4, CRC: 8, ENTRY_SIZE: 12 } as const
/** Time index entry layout (CRC over bytes [0, CRC)). */
export const TIDX = { TIMESTAMP: 0, REL_OFFSET: 8, CRC: 12, ENTRY_SIZE: 16 } as const

/** Segment log file suffix; the stem is the base offset padded to 20 digits. */
export const LOG_SUFFIX = '.log'
/** Sparse offset index file suffix. */
export const INDEX_SUFFIX = '.index'
/** Sparse time index file suffix. */
export const TIME_INDEX_SUFFIX = '.timeindex'
/** Suffix of compaction output not yet swapped in; leftovers are deleted on open. */
export const CLEANED_SUFFIX = '.cleaned'
/**
 * Marker of a sealed segment whose background fsync had not finished (fsync 'never' or
 * 'interval'): recovery verifies that segment like the tail, then deletes the marker.
 */
export const SEALING_SUFFIX = '.sealing'
/** Suffix of atomically written files before their rename; leftovers are deleted on open. */
export const TMP_SUFFIX = '.tmp'
/** Digits of a segment file name stem. */
export const BASE_OFFSET_DIGITS = 20

/** Largest relative offset an index entry can hold; a segment rolls before exceeding it. */
export const MAX_RELATIVE_OFFSET = 0xffffffff
/** Largest segment size accepted (positions are u32, and we keep well clear of 4 GiB). */
export const MAX_SEGMENT_BYTES = 0x7fffffff

/**
 * Rounds of a log without fsync 'always' up to this many bytes are written with a blocking
 * `pwrite` on the event loop instead of through the thread pool: a small write to the page
 * cache costs a few microseconds, the thread-pool round trip two thread wake-ups and a wake-up
 * of the event loop when it completes (one publish at a time: one per member per publish,
 * issue 17). Larger rounds (under load) stay pipelined through the thread pool.
 */
export const INLINE_WRITE_BYTES = 16 * 1024

/** Defaults of `openLog` options. */
export const LOG_DEFAULTS = {
  /** Roll the active segment once it would exceed this many bytes. */
  segmentBytes: 64 * 1024 * 1024,
  /** Roll the active segment once its first append is this old (ms); 0 = never by age. */
  segmentMs: 7 * 24 * 3600 * 1000,
  /** Bytes of log between two sparse index entries. */
  indexIntervalBytes: 4096,
  /** Largest record accepted (bytes, header included). */
  maxRecordBytes: 16 * 1024 * 1024,
  /** Default byte budget of `read`. */
  readMaxBytes: 1024 * 1024,
  /** Interval of `fsync: { intervalMs }` when not given (ms). */
  fsyncIntervalMs: 1000,
  /** Tombstones (keyed records with an empty value) outlive compaction this long (ms). */
  deleteRetentionMs: 24 * 3600 * 1000,
  /** Most distinct keys one compaction pass holds in memory (bounds its memory). */
  compactionMaxKeys: 1_000_000,
  /** Background maintenance (age roll, retention, compaction) period (ms); 0 = off. */
  maintenanceIntervalMs: 0,
  /** Bytes gathered into one write syscall at most (group commit buffer). */
  maxWriteBytes: 8 * 1024 * 1024,
  /** Sealed segments whose sparse indexes stay cached in memory. */
  indexCacheSegments: 16,
  /** Chunk size of sequential scans (recovery, compaction, index rebuild). */
  scanChunkBytes: 1024 * 1024,
} as const
