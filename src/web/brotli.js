// Brotli, which the browser inflates only when a server says `Content-Encoding: br` (and
// `trunk serve` never does) and which DecompressionStream lacks: the engine's brotli copy is
// a third smaller than its gzip copy. The decoder is the brotli-dec-wasm package (.ci/setup puts
// it in src/web/vendor/); its own wasm travels as gzip, which the browser inflates natively.
import initDecoder, { BrotliStreamResultCode, DecompressStream } from "./brotli_dec_wasm.js";

const DECODER_URL = new URL("./brotli_dec_wasm_bg.wasm", import.meta.url);
// Output per call into the decoder: large enough that a 17 MB engine takes a few dozen calls
// per network chunk at most, small enough not to hold the main thread for long.
const OUTPUT_BYTES = 1 << 20;

let decoder = null;

// Loads the decoder once; rejects where it can't be had (no DecompressionStream, no file).
export function loadBrotliDecoder() {
  decoder ??= (async () => {
    const gzip = await fetch(`${DECODER_URL.href}.gz`);
    if (!gzip.ok || !gzip.body) throw new Error(`brotli decoder: HTTP ${gzip.status}`);
    const inflated = gzip.body.pipeThrough(new DecompressionStream("gzip"));
    await initDecoder({ module_or_path: new Response(inflated, { headers: { "Content-Type": "application/wasm" } }) });
  })();
  return decoder;
}

// A TransformStream from brotli bytes to the bytes they pack, as they arrive. Errors on a
// corrupt or truncated stream, so a half-downloaded engine is never compiled.
export function brotliInflater() {
  const stream = new DecompressStream();
  let finished = false;
  return new TransformStream({
    transform(chunk, controller) {
      let input = chunk;
      for (;;) {
        if (finished) {
          if (input.byteLength) throw new Error("brotli: bytes after the end of the stream");
          return;
        }
        let result;
        try {
          result = stream.decompress(input, OUTPUT_BYTES);
        } catch (error) {
          stream.free();
          throw error;
        }
        const { buf, code } = result; // each read of `buf` copies it out of the decoder
        input = input.subarray(result.input_offset);
        result.free();
        if (buf.byteLength) controller.enqueue(buf);
        finished = code === BrotliStreamResultCode.ResultSuccess;
        if (code === BrotliStreamResultCode.NeedsMoreInput) return;
      }
    },
    flush() {
      stream.free();
      if (!finished) throw new Error("brotli: the stream ended early");
    },
  });
}
