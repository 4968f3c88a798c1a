// supabase-js's storage client, unchanged, against STORAGE_URL; prints one JSON line per call.
// Driven by tests/test_supabase_clients.py, which sets STORAGE_URL, TOKEN, BUCKET and PATHS.
import { createHash } from 'node:crypto'
import { StorageClient } from '@supabase/storage-js'

const { STORAGE_URL, TOKEN, BUCKET } = process.env
const [plain, spaced, missing] = JSON.parse(process.env.PATHS)
const bucket = new StorageClient(STORAGE_URL, { Authorization: `Bearer ${TOKEN}` }).from(BUCKET)

const digest = (bytes) => createHash('sha256').update(Buffer.from(bytes)).digest('hex')

async function fetched(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(10000) })
  const bytes = await response.arrayBuffer()
  return {
    status: response.status,
    sha256: digest(bytes),
    disposition: response.headers.get('content-disposition'),
  }
}

async function signOne(path, options) {
  const { data, error } = await bucket.createSignedUrl(path, 60, options)
  if (error) return { error: error.message, status: error.status ?? error.statusCode ?? null }
  return fetched(data.signedUrl)
}

const calls = {
  'createSignedUrl': () => signOne(plain),
  'createSignedUrl (name needing encoding)': () => signOne(spaced),
  'createSignedUrl {download: true}': () => signOne(plain, { download: true }),
  'createSignedUrl {download: "photo.png"}': () => signOne(plain, { download: 'photo.png' }),
  'createSignedUrl (missing object)': () => signOne(missing),
  'createSignedUrls': async () => {
    const { data, error } = await bucket.createSignedUrls([plain, spaced, missing], 60)
    if (error) return { error: error.message }
    const items = []
    for (const item of data) {
      items.push({
        path: item.path,
        error: item.error,
        fetched: item.signedUrl ? await fetched(item.signedUrl) : null,
      })
    }
    return { items }
  },
  'download (authenticated)': async () => {
    const { data, error } = await bucket.download(plain)
    if (error) return { error: error.message }
    return { sha256: digest(await data.arrayBuffer()) }
  },
  'download (authenticated, name needing encoding)': async () => {
    const { data, error } = await bucket.download(spaced)
    if (error) return { error: error.message }
    return { sha256: digest(await data.arrayBuffer()) }
  },
}

for (const [call, run] of Object.entries(calls)) {
  let result
  try {
    result = await run()
  } catch (exc) {
    result = { exception: String(exc) }
  }
  console.log(JSON.stringify({ call, ...result }))
}
