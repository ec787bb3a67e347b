/* Sparse-times-dense products for weight-sparse matrices on the CPU (docs/sparse-execution.md).
 *
 * y[n, :] = x[n, :] W^T (+ bias) with W as compressed sparse rows and x, y row-major. Rows of x
 * are taken BLOCK at a time and transposed into a buffer, so that every nonzero W[j, k] adds
 * w * (column k of the block) to a BLOCK-wide accumulator of output column j: one vector
 * multiply-add per nonzero, its operand a contiguous, cache-resident row of the buffer.
 * The same kernel gives the input gradient with the CSR of W^T. dense_t_sparse gives the full
 * weight gradient g^T x over the nonzeros of whichever of x and g is sparse (AbsTopK leaves most
 * activations at zero). The sampled product gives a weight gradient at the kept entries only
 * (support-mode steps). abs_topk keeps the k entries of
 * largest magnitude of every row (AbsTopK activations) by selection instead of a sort.
 *
 * Built on first use with the system C compiler and called through ctypes
 * (sparsecircuits/model/native.py); without a compiler torch's CSR kernels are used instead.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 32
#define LANES 8
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
#define NVEC (BLOCK / LANES)
#define TILE 64 /* columns per tile of a transpose */

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define HAVE_SHUFFLE 1
#endif
#endif

#ifdef HAVE_SHUFFLE
typedef float vec8u __attribute__((vector_size(8 * sizeof(float)), aligned(4)));
typedef float vec8 __attribute__((vector_size(8 * sizeof(float))));
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)

/* dst[c * dst_stride + r] = src[r * src_stride + c] for an 8 x 8 block, in registers. */
static inline void transpose8(const float *src, int64_t src_stride, float *dst, int64_t dst_stride) {
    vec8 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = *(const vec8u *)(src + i * src_stride);
    for (int i = 0; i < 8; i += 2) {
        t[i] = SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = SHUF(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = SHUF(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = SHUF(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = SHUF(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int i = 0; i < 4; i++) {
        *(vec8u *)(dst + i * dst_stride) = SHUF(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        *(vec8u *)(dst + (i + 4) * dst_stride) = SHUF(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}
#endif

/* nnz per row of w (rows x cols, row-major) into indptr[rows + 1] and per column into
 * tindptr[cols + 1] (both as prefix sums); returns the number of nonzeros. */
int64_t csr_count(const float *w, int64_t rows, int64_t cols, int32_t *indptr, int32_t *tindptr) {
    memset(tindptr, 0, (size_t)(cols + 1) * sizeof(int32_t));
    int64_t nnz = 0;
    indptr[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            if (row[c] != 0.0f) {
                nnz++;
                tindptr[c + 1]++;
            }
        }
        indptr[r + 1] = (int32_t)nnz;
    }
    for (int64_t c = 0; c < cols; c++) tindptr[c + 1] += tindptr[c];
    return nnz;
}

/* The CSR of w and of its transpose, from the counts of csr_count. */
int csr_fill(const float *w, int64_t rows, int64_t cols, const int32_t *indptr, int32_t *indices, float *values,
             const int32_t *tindptr, int32_t *tindices, float *tvalues) {
    int32_t *cursor = malloc((size_t)cols * sizeof(int32_t));
    if (cursor == NULL) return -1;
    memcpy(cursor, tindptr, (size_t)cols * sizeof(int32_t));
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        int32_t at = indptr[r];
        for (int64_t c = 0; c < cols; c++) {
            float v = row[c];
            if (v != 0.0f) {
                indices[at] = (int32_t)c;
                values[at++] = v;
                int32_t t = cursor[c]++;
                tindices[t] = (int32_t)r;
                tvalues[t] = v;
            }
        }
    }
    free(cursor);
    return 0;
}

/* One thread's share of a kernel: the units [lo, hi) (row blocks, or rows for abs_topk). */
typedef struct {
    int64_t n, in_f, out_f, k;
    const float *x, *bias, *g;
    const int32_t *indptr, *indices;
    const float *values;
    float *y;
    uint8_t *keep;
    int64_t lo, hi;
    int status;
} job;

/* Rows [n0, n0 + BLOCK) of src (n x width) into buf[width][BLOCK], zero past the last row;
 * in tiles of TILE columns, so that the written part of buf stays in the first-level cache. */
static void transpose_block(const float *src, int64_t n, int64_t width, int64_t n0, float *buf) {
    int64_t m = n - n0 < BLOCK ? n - n0 : BLOCK;
    if (m < BLOCK) memset(buf, 0, (size_t)width * BLOCK * sizeof(float));
    for (int64_t k0 = 0; k0 < width; k0 += TILE) {
        int64_t k1 = k0 + TILE < width ? k0 + TILE : width;
#ifdef HAVE_SHUFFLE
        if (m == BLOCK && k1 - k0 == TILE) {
            for (int64_t b = 0; b < BLOCK; b += 8)
                for (int64_t k = k0; k < k1; k += 8) transpose8(src + (n0 + b) * width + k, width, buf + k * BLOCK + b, BLOCK);
            continue;
        }
#endif
        for (int64_t b = 0; b < m; b++) {
            const float *row = src + (n0 + b) * width;
            for (int64_t k = k0; k < k1; k++) buf[k * BLOCK + b] = row[k];
        }
    }
}

static void *spmm_range(void *arg) {
    job *jb = arg;
    float *buf = aligned_alloc(64, (size_t)jb->in_f * BLOCK * sizeof(float));
    float tile[TILE * BLOCK] __attribute__((aligned(64)));
    if (buf == NULL) {
        jb->status = -1;
        return NULL;
    }
    for (int64_t blk = jb->lo; blk < jb->hi; blk++) {
        int64_t n0 = blk * BLOCK, m = jb->n - n0 < BLOCK ? jb->n - n0 : BLOCK;
        transpose_block(jb->x, jb->n, jb->in_f, n0, buf);
        for (int64_t j0 = 0; j0 < jb->out_f; j0 += TILE) {
            int64_t j1 = j0 + TILE < jb->out_f ? j0 + TILE : jb->out_f;
            for (int64_t j = j0; j < j1; j++) {
                vec a[NVEC], c[NVEC];
                float b0 = jb->bias ? jb->bias[j] : 0.0f;
                for (int v = 0; v < NVEC; v++) {
                    a[v] = (vec){0} + b0;
                    c[v] = (vec){0};
                }
                int32_t p = jb->indptr[j], end = jb->indptr[j + 1];
                for (; p + 1 < end; p += 2) { /* two chains of multiply-adds hide their latency */
                    const vec *r0 = (const vec *)(buf + (int64_t)jb->indices[p] * BLOCK);
                    const vec *r1 = (const vec *)(buf + (int64_t)jb->indices[p + 1] * BLOCK);
                    float w0 = jb->values[p], w1 = jb->values[p + 1];
                    for (int v = 0; v < NVEC; v++) {
                        a[v] += w0 * r0[v];
                        c[v] += w1 * r1[v];
                    }
                }
                if (p < end) {
                    const vec *r0 = (const vec *)(buf + (int64_t)jb->indices[p] * BLOCK);
                    float w0 = jb->values[p];
                    for (int v = 0; v < NVEC; v++) a[v] += w0 * r0[v];
                }
                vec *u = (vec *)(tile + (j - j0) * BLOCK);
                for (int v = 0; v < NVEC; v++) u[v] = a[v] + c[v];
            }
#ifdef HAVE_SHUFFLE
            if (m == BLOCK && j1 - j0 == TILE) {
                for (int64_t j = 0; j < TILE; j += 8)
                    for (int64_t b = 0; b < BLOCK; b += 8)
                        transpose8(tile + j * BLOCK + b, BLOCK, jb->y + (n0 + b) * jb->out_f + j0 + j, jb->out_f);
                continue;
            }
#endif
            for (int64_t b = 0; b < m; b++) { /* the tile, transposed, into rows of y */
                float *y = jb->y + (n0 + b) * jb->out_f;
                for (int64_t j = j0; j < j1; j++) y[j] = tile[(j - j0) * BLOCK + b];
            }
        }
    }
    free(buf);
    return NULL;
}

/* Per thread: the sampled product g^T x at the nonzeros of one CSR (rows of g index its rows,
 * rows of x its columns), summed over the thread's row blocks into out[nnz]. */
static void *sampled_range(void *arg) {
    job *jb = arg;
    float *bx = aligned_alloc(64, (size_t)jb->in_f * BLOCK * sizeof(float));
    float *bg = aligned_alloc(64, (size_t)jb->out_f * BLOCK * sizeof(float));
    if (bx == NULL || bg == NULL) {
        free(bx);
        free(bg);
        jb->status = -1;
        return NULL;
    }
    for (int64_t blk = jb->lo; blk < jb->hi; blk++) {
        int64_t n0 = blk * BLOCK;
        transpose_block(jb->x, jb->n, jb->in_f, n0, bx);
        transpose_block(jb->g, jb->n, jb->out_f, n0, bg);
        for (int64_t j = 0; j < jb->out_f; j++) {
            const vec *gj = (const vec *)(bg + j * BLOCK);
            for (int32_t p = jb->indptr[j]; p < jb->indptr[j + 1]; p++) {
                const vec *xk = (const vec *)(bx + (int64_t)jb->indices[p] * BLOCK);
                vec s = {0};
                for (int v = 0; v < NVEC; v++) s += gj[v] * xk[v];
                float t = 0.0f;
                for (int l = 0; l < LANES; l++) t += s[l];
                jb->y[p] += t;
            }
        }
    }
    free(bx);
    free(bg);
    return NULL;
}

#define CHUNK 128 /* rows of the dense operand per pass of dense_t_sparse: CHUNK x WIDE floats stay in L1 */
#define WIDE 64 /* output rows per block of dense_t_sparse */
#define NWIDE (WIDE / LANES)

/* The columns of s (n x J, row-major) chunk by chunk: segment (c, j) = [ptr[c J + j], ptr[c J + j + 1])
 * lists the rows of chunk c (CHUNK rows) where column j is nonzero, as offsets in the chunk (idx)
 * with their values. csc_count fills ptr (nchunks J + 1 prefix sums) and returns the nonzeros. */
int64_t csc_count(const float *s, int64_t n, int64_t J, int32_t *ptr) {
    int64_t chunks = (n + CHUNK - 1) / CHUNK;
    memset(ptr, 0, (size_t)(chunks * J + 1) * sizeof(int32_t));
    for (int64_t t = 0; t < n; t++) {
        int32_t *cnt = ptr + 1 + (t / CHUNK) * J;
        const float *row = s + t * J;
        for (int64_t j = 0; j < J; j++) cnt[j] += row[j] != 0.0f;
    }
    for (int64_t i = 0; i < chunks * J; i++) ptr[i + 1] += ptr[i];
    return ptr[chunks * J];
}

/* The offsets and values of csc_count's segments, rows in ascending order within each. */
int csc_fill(const float *s, int64_t n, int64_t J, const int32_t *ptr, uint8_t *idx, float *val) {
    int32_t *cursor = malloc((size_t)(J > 0 ? J : 1) * sizeof(int32_t));
    if (cursor == NULL) return -1;
    for (int64_t t = 0; t < n; t++) {
        if (t % CHUNK == 0) memcpy(cursor, ptr + (t / CHUNK) * J, (size_t)J * sizeof(int32_t));
        const float *row = s + t * J;
        for (int64_t j = 0; j < J; j++) {
            if (row[j] != 0.0f) {
                int32_t k = cursor[j]++;
                idx[k] = (uint8_t)(t % CHUNK);
                val[k] = row[j];
            }
        }
    }
    free(cursor);
    return 0;
}

/* Per thread: blocks [lo, hi) of WIDE output rows of out (R x J) = D^T S, D dense (n x R) in jb->g,
 * S in the chunked columns of csc_fill (ptr in jb->indptr, offsets in jb->keep, values). For every
 * chunk, WIDE columns of D's CHUNK rows go into a first-level-cache buffer and every nonzero
 * S[t, j] adds s * (row t of the buffer) to the accumulator (WIDE floats) of (block, j) in jb->y, laid
 * out block-major (blocks x J x WIDE); the caller transposes it. */
static void *dense_t_sparse_range(void *arg) {
    job *jb = arg;
    const int64_t n = jb->n, R = jb->out_f, J = jb->in_f;
    const uint8_t *idx = jb->keep;
    float buf[CHUNK * WIDE] __attribute__((aligned(64)));
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        int64_t rows = n - c0 < CHUNK ? n - c0 : CHUNK;
        const int32_t *ptr = jb->indptr + (c0 / CHUNK) * J;
        for (int64_t blk = jb->lo; blk < jb->hi; blk++) {
            int64_t r0 = blk * WIDE, m = R - r0 < WIDE ? R - r0 : WIDE;
            for (int64_t t = 0; t < rows; t++) {
                memcpy(buf + t * WIDE, jb->g + (c0 + t) * R + r0, (size_t)m * sizeof(float));
                if (m < WIDE) memset(buf + t * WIDE + m, 0, (size_t)(WIDE - m) * sizeof(float));
            }
            float *acc = jb->y + blk * J * WIDE;
            for (int64_t j = 0; j < J; j++) {
                int32_t p = ptr[j], end = ptr[j + 1];
                if (p == end) continue;
                vec a[NWIDE], c[NWIDE];
                for (int v = 0; v < NWIDE; v++) a[v] = c[v] = (vec){0};
                for (; p + 1 < end; p += 2) {
                    const vec *u0 = (const vec *)(buf + idx[p] * WIDE);
                    const vec *u1 = (const vec *)(buf + idx[p + 1] * WIDE);
                    float s0 = jb->values[p], s1 = jb->values[p + 1];
                    for (int v = 0; v < NWIDE; v++) {
                        a[v] += s0 * u0[v];
                        c[v] += s1 * u1[v];
                    }
                }
                if (p < end) {
                    const vec *u0 = (const vec *)(buf + idx[p] * WIDE);
                    for (int v = 0; v < NWIDE; v++) a[v] += jb->values[p] * u0[v];
                }
                vec *o = (vec *)(acc + j * WIDE);
                for (int v = 0; v < NWIDE; v++) o[v] += a[v] + c[v];
            }
        }
    }
    return NULL;
}

/* Run fn over `units` split evenly across up to `threads` threads (this one included); the
 * sampled product sums its threads' partial results (nnz of them) into base->y. */
static int run_jobs(const job *base, int64_t units, int threads, void *(*fn)(void *), int64_t nnz) {
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (threads > units) threads = (int)(units > 0 ? units : 1);
    job jobs[64];
    pthread_t tids[64];
    int started[64] = {0};
    float *partial = NULL;
    if (fn == sampled_range && threads > 1) {
        partial = calloc((size_t)(threads - 1) * (size_t)nnz, sizeof(float));
        if (partial == NULL) return -1;
    }
    int status = 0;
    for (int t = 0; t < threads; t++) {
        jobs[t] = *base;
        jobs[t].lo = units * t / threads;
        jobs[t].hi = units * (t + 1) / threads;
        jobs[t].status = 0;
        if (partial != NULL && t > 0) jobs[t].y = partial + (int64_t)(t - 1) * nnz;
        if (t > 0) {
            started[t] = pthread_create(&tids[t], NULL, fn, &jobs[t]) == 0;
            if (!started[t]) fn(&jobs[t]); /* no thread: this range runs here, in line */
        }
    }
    fn(&jobs[0]);
    for (int t = 0; t < threads; t++) {
        if (started[t]) pthread_join(tids[t], NULL);
        status |= jobs[t].status;
    }
    if (partial != NULL) {
        for (int t = 1; t < threads; t++)
            for (int64_t p = 0; p < nnz; p++) base->y[p] += partial[(int64_t)(t - 1) * nnz + p];
        free(partial);
    }
    return status;
}

/* y (n x out_f) = x (n x in_f) W^T + bias, W given as CSR (out_f rows); bias may be NULL. */
int spmm(int64_t n, int64_t in_f, int64_t out_f, const float *x, const int32_t *indptr, const int32_t *indices,
         const float *values, const float *bias, float *y, int threads) {
    job base = {.n = n, .in_f = in_f, .out_f = out_f, .x = x, .bias = bias, .indptr = indptr, .indices = indices,
                .values = values, .y = y};
    return run_jobs(&base, (n + BLOCK - 1) / BLOCK, threads, spmm_range, 0);
}

/* out[p] = sum_n g[n, row(p)] x[n, indices[p]] for every nonzero p of a CSR with out_f rows
 * (g is n x out_f, x is n x in_f); out must hold zeros. */
int sampled_gt_x(int64_t n, int64_t in_f, int64_t out_f, const float *g, const float *x, const int32_t *indptr,
                 const int32_t *indices, float *out, int threads) {
    job base = {.n = n, .in_f = in_f, .out_f = out_f, .x = x, .g = g, .indptr = indptr, .indices = indices, .y = out};
    return run_jobs(&base, (n + BLOCK - 1) / BLOCK, threads, sampled_range, indptr[out_f]);
}

/* out = D^T S (R x J), or its transpose S^T D (J x R) with `transposed`, for a dense D (n x R,
 * row-major) and S (n x J) in the chunked columns of csc_fill: the weight gradient g^T x when the
 * activations x or the output gradient g are mostly zeros, as after AbsTopK. */
int dense_t_sparse(int64_t n, int64_t R, int64_t J, const float *d, const int32_t *ptr, const uint8_t *idx,
                   const float *val, float *out, int transposed, int threads) {
    int64_t blocks = (R + WIDE - 1) / WIDE;
    float *scratch = aligned_alloc(64, (size_t)(blocks * (J > 0 ? J : 1) * WIDE) * sizeof(float));
    if (scratch == NULL) return -1;
    memset(scratch, 0, (size_t)(blocks * J * WIDE) * sizeof(float));
    job base = {.n = n, .in_f = J, .out_f = R, .g = d, .indptr = ptr, .keep = (uint8_t *)idx, .values = val,
                .y = scratch};
    int status = run_jobs(&base, blocks, threads, dense_t_sparse_range, 0);
    for (int64_t blk = 0; blk < blocks; blk++) { /* the block-major accumulators into out */
        const float *acc = scratch + blk * J * WIDE;
        int64_t r0 = blk * WIDE, m = R - r0 < WIDE ? R - r0 : WIDE, j = 0;
        if (transposed) {
            for (; j < J; j++) memcpy(out + j * R + r0, acc + j * WIDE, (size_t)m * sizeof(float));
            continue;
        }
#ifdef HAVE_SHUFFLE
        if (m == WIDE)
            for (; j + 8 <= J; j += 8)
                for (int64_t b = 0; b < WIDE; b += 8) transpose8(acc + j * WIDE + b, WIDE, out + (r0 + b) * J + j, J);
#endif
        for (int64_t b = 0; b < m; b++)
            for (int64_t jj = j; jj < J; jj++) out[(r0 + b) * J + jj] = acc[jj * WIDE + b];
    }
    free(scratch);
    return status;
}

/* How many of m[0..n) are >= u: a branch-free count the compiler vectorizes. */
static int64_t count_ge(const uint32_t *m, int64_t n, uint32_t u) {
    uint32_t cnt = 0; /* a row has fewer than 2^32 entries */
    for (int64_t c = 0; c < n; c++) cnt += (uint32_t)(m[c] >= u);
    return (int64_t)cnt;
}

#define HIST_BITS 16
#define HIST_SHIFT (31 - HIST_BITS)
#define HIST_MIN_ROW 16384 /* rows at least this long select by a histogram first (shorter: bisection, */
                           /* whose vectorized counts beat a histogram's scalar increments) */

/* A bit pattern t of m[0..n) with at least k entries >= t and fewer than k entries > t:
 * bisection over [lo, hi), counting, stopping early at exactly k entries >= mid. */
static uint32_t bisect_threshold(const uint32_t *m, int64_t n, int64_t k, uint32_t lo, uint64_t hi) {
    while (hi - lo > 1) {
        uint32_t mid = (uint32_t)(lo + (hi - lo) / 2);
        int64_t cnt = count_ge(m, n, mid);
        if (cnt >= k) lo = mid;
        else hi = mid;
        if (cnt == k) break; /* exactly k entries >= mid: they are the k largest */
    }
    return lo;
}

/* The same threshold for a long row: a histogram of the top bits finds the bin that holds
 * it, then the bisection runs over that bin's entries only (copied to bin). */
static uint32_t histogram_threshold(const uint32_t *m, int64_t n, int64_t k, uint32_t *hist, uint32_t *bin) {
    memset(hist, 0, ((size_t)1 << HIST_BITS) * sizeof(uint32_t));
    for (int64_t c = 0; c < n; c++) hist[m[c] >> HIST_SHIFT]++;
    int64_t above = 0, b = ((int64_t)1 << HIST_BITS) - 1;
    while (above + hist[b] < k) above += hist[b--];
    int64_t size = 0;
    for (int64_t c = 0; c < n; c++) {
        bin[size] = m[c];
        size += (int64_t)(m[c] >> HIST_SHIFT) == b; /* branch-free compaction */
    }
    return bisect_threshold(bin, size, k - above, (uint32_t)(b << HIST_SHIFT), (uint64_t)(b + 1) << HIST_SHIFT);
}

/* Rows [lo, hi) of abs_topk; a row is in_f wide. */
static void *topk_range(void *arg) {
    job *jb = arg;
    const int64_t d = jb->in_f, k = jb->k;
    const int long_row = d >= HIST_MIN_ROW;
    uint32_t *mag = malloc((size_t)d * sizeof(uint32_t));
    uint32_t *bin = long_row ? malloc((size_t)d * sizeof(uint32_t)) : NULL;
    uint32_t *hist = long_row ? malloc(((size_t)1 << HIST_BITS) * sizeof(uint32_t)) : NULL;
    if (mag == NULL || (long_row && (bin == NULL || hist == NULL))) {
        free(mag);
        free(bin);
        free(hist);
        jb->status = -1;
        return NULL;
    }
    for (int64_t r = jb->lo; r < jb->hi; r++) {
        const float *x = jb->x + r * d;
        float *y = jb->y != NULL ? jb->y + r * d : NULL;
        uint8_t *keep = jb->keep + r * d;
        /* |x| as the bits of a non-negative float, whose integer order is the value order */
        memcpy(mag, x, (size_t)d * sizeof(uint32_t));
        for (int64_t c = 0; c < d; c++) mag[c] &= 0x7fffffffu;
        uint32_t t = long_row ? histogram_threshold(mag, d, k, hist, bin) : bisect_threshold(mag, d, k, 0, 0x80000000u);
        if (count_ge(mag, d, t) == k) { /* no ties cut at the threshold: one vectorized pass */
            for (int64_t c = 0; c < d; c++) keep[c] = (uint8_t)(mag[c] >= t);
            if (y != NULL)
                for (int64_t c = 0; c < d; c++) y[c] = mag[c] >= t ? x[c] : 0.0f;
            continue;
        }
        int64_t ties = k - count_ge(mag, d, t + 1); /* entries at the threshold to keep, lowest index first */
        for (int64_t c = 0; c < d; c++) {
            int on = mag[c] > t || (mag[c] == t && ties-- > 0);
            keep[c] = (uint8_t)on;
            if (y != NULL) y[c] = on ? x[c] : 0.0f;
        }
    }
    free(mag);
    free(bin);
    free(hist);
    return NULL;
}

/* y = x with all but the k entries of largest magnitude of each row zeroed (rows x d,
 * row-major), keep[i] = 1 where kept; ties at the threshold go to the lower index. */
int abs_topk(int64_t rows, int64_t d, int64_t k, const float *x, float *y, uint8_t *keep, int threads) {
    job base = {.n = rows, .in_f = d, .k = k, .x = x, .y = y, .keep = keep};
    return run_jobs(&base, rows, threads, topk_range, 0);
}
