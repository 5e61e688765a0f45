/** A seeded pseudo-random source for tests that must be repeatable: `rnd(n)` is an integer in [0, n). */
export function seededRandom(seed: number): (n: number) => number {
  let s = seed;
  return (n: number): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
}
