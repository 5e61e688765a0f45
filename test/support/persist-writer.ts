/**
 * Child process for the persistence test: saves a large state in a loop through FileStateStore and prints
 * "saved <n>" after each completed save, until it is killed (the test sends SIGKILL at random points) or its
 * stdin closes. Bounded: at most 500 saves or 30 s.
 *
 * argv: <file> <secret> <registrations>
 */
import { FileStateStore } from '../../src/persist';
import { bigState } from './persist-state';

async function main(file: string, secret: string, count: string): Promise<void> {
  const store = new FileStateStore(file, secret);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  process.stdout.write('ready\n');
  const until = Date.now() + 30000;
  for (let n = 1; n <= 500 && Date.now() < until; n++) {
    await store.save(bigState(n, Number(count)));
    process.stdout.write(`saved ${n}\n`);
  }
  process.exit(0);
}

if (require.main === module) {
  const [file, secret, count] = process.argv.slice(2);
  main(file, secret, count).catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
}
