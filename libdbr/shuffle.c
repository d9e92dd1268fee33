/* shuffle.c - libdbr's one source of reproducible randomness:
 * dbr_seed_derive (every derived seed: per epoch, per stream, per batch,
 * per image of a batch) and dbr_permutation, the shuffle of dareblopy's
 * datasets (in C because a Python loop costs about a microsecond a sample).
 *
 * Both rest on SplitMix64 (Steele, Lea and Flood, 2014).  Deriving a seed
 * from (state, part) is the first output of the SplitMix64 stream that
 * starts at state * GOLDEN + part * EPOCH_MUL; several parts chain.
 *
 * It must stay bit-identical to dareblopy/_shuffle.py (tests compare them):
 * SplitMix64 seeded with seed * GOLDEN + epoch * EPOCH_MUL (mod 2^64), a
 * Fisher-Yates pass from the end, and j = ((next >> 32) * (i + 1)) >> 32
 * (Lemire's multiply-shift on the top 32 bits). */
#include "internal.h"

#define GOLDEN 0x9E3779B97F4A7C15ull
#define EPOCH_MUL 0xD1B54A32D192ED03ull

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += GOLDEN);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* floor(h * n / 2^32) for h < 2^32, exactly, without 128-bit integers. */
static uint64_t scale(uint64_t h, uint64_t n)
{
    return h * (n >> 32) + ((h * (n & 0xffffffffu)) >> 32);
}

uint64_t dbr__seed_step(uint64_t state, uint64_t part)
{
    uint64_t s = state * GOLDEN + part * EPOCH_MUL;
    return splitmix64(&s);
}

uint64_t dbr_seed_derive(uint64_t seed, const uint64_t *parts, size_t count)
{
    for (size_t i = 0; parts && i < count; i++)
        seed = dbr__seed_step(seed, parts[i]);
    return seed;
}

int dbr_permutation(uint64_t n, uint64_t seed, uint64_t epoch, int64_t *out)
{
    if (n && !out)
        return dbr__fail(DBR_E_ARG, "dbr_permutation: NULL out for %llu values",
                         (unsigned long long)n);
    /* The stream whose first output is dbr_seed_derive(seed, {epoch}). */
    uint64_t state = seed * GOLDEN + epoch * EPOCH_MUL;
    for (uint64_t i = 0; i < n; i++)
        out[i] = (int64_t)i;
    for (uint64_t i = n - (n > 0); i > 0; i--) {
        uint64_t j = scale(splitmix64(&state) >> 32, i + 1);
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
    return DBR_OK;
}
