// embed.js BASE_URL INPUT [HEADER=VALUE]: one embeddings call with the official OpenAI SDK, as an
// application would make it (the SDK's default encoding_format); prints the vector's dimension
// and Euclidean norm as JSON.
const OpenAI = require('openai');

async function main() {
  const [baseURL, input, header] = process.argv.slice(2);
  const defaultHeaders = {};
  if (header) {
    const [name, value] = header.split('=');
    defaultHeaders[name] = value;
  }
  const client = new OpenAI({ baseURL, apiKey: 'not-needed', defaultHeaders, maxRetries: 0 });
  const r = await client.embeddings.create({ model: 'embedder', input });
  const v = r.data[0].embedding;
  console.log(JSON.stringify({ dim: v.length, norm: Math.sqrt(v.reduce((s, x) => s + x * x, 0)) }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
