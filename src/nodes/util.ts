export const EVENT_TYPES = ['register', 'update', 'deregister', 'expire', 'send', 'sleep', 'awake'] as const;

/** `sensor-*` → /^sensor-.*$/ ; an empty pattern matches everything. */
export function globToRegExp(glob: string): RegExp | undefined {
  if (!glob) return undefined;
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}
