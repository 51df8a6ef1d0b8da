// Logic-less template rendering: {{name}} placeholders only; an unknown or unused name is an error.
export function renderTemplate(text: string, values: Record<string, string>, what = 'template'): string {
  const used = new Set<string>();
  const out = text.replace(/\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}/gi, (_m, name: string) => {
    if (!(name in values)) throw new Error(`${what}: no value for {{${name}}}`);
    used.add(name);
    return values[name]!;
  });
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length) throw new Error(`${what}: values never used: ${unused.join(', ')}`);
  return out;
}
