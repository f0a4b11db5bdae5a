// "did you mean": the nearest of a few known words to a misspelt one, by
// Damerau-Levenshtein distance (a swap of two neighbours is one edit: memroy).
export function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The known word closest to `word`, if any is close enough to be what was meant (a third of its length, at least 1). */
export function closest(word: string, known: readonly string[]): string | undefined {
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: { w: string; d: number } | undefined;
  for (const w of known) {
    const d = distance(word.toLowerCase(), w.toLowerCase());
    if (d <= limit && (best === undefined || d < best.d)) best = { w, d };
  }
  return best?.w;
}
