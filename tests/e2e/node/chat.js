// chat.js BASE_URL: one chat completion and one streamed, with the official OpenAI SDK as an
// application makes them (trusting the authorities in NODE_EXTRA_CA_CERTS for an https URL);
// prints {content, streamed, chunks} as JSON.
const OpenAI = require('openai');

async function main() {
  const [baseURL] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey: 'not-needed', maxRetries: 0 });
  const messages = [{ role: 'user', content: 'hello there model' }];
  const r = await client.chat.completions.create({ model: 'm', messages });
  let streamed = '';
  let chunks = 0;
  for await (const chunk of await client.chat.completions.create({ model: 'm', messages, stream: true })) {
    streamed += chunk.choices[0]?.delta?.content || '';
    chunks++;
  }
  console.log(JSON.stringify({ content: r.choices[0].message.content, streamed, chunks }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
