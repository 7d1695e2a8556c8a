// The console's JSON API, relative to the page so the console also works
// mounted under a path prefix.

export async function get(path) {
  const resp = await fetch('api/' + path, {headers: {Accept: 'application/json'}});
  let body;
  try {
    body = await resp.json();
  } catch {
    throw new Error(`${path}: HTTP ${resp.status}`);
  }
  if (!resp.ok) throw new Error(body.error || `${path}: HTTP ${resp.status}`);
  return body;
}

export const enc = encodeURIComponent;
