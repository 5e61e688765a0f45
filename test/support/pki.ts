/** A throw-away PKI made with the openssl command line in a temporary directory (EC P-256 keys). */
import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export class TestPki {
  dir = '';

  /** Creates the directory; call from a before() hook. */
  open(prefix: string): void {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  }

  /** Removes the directory and everything in it. */
  remove(): void {
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  readonly file = (name: string): string => path.join(this.dir, name);
  readonly read = (name: string): string => fs.readFileSync(this.file(name), 'utf8');

  /** Runs openssl in the directory. */
  readonly ossl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  };

  /** `<name>.key`: a P-256 private key (PKCS#8 PEM). */
  ecKey(name: string): void {
    this.ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
  }

  /** `<name>.key` and a self-signed `<name>.pem` with CN = name. */
  rootCa(name: string): void {
    this.ecKey(name);
    this.ossl('req', '-x509', '-new', '-key', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=${name}`, '-days', '3');
  }

  /** `<name>.key` and `<name>.pem` with CN = cn, issued by `<ca>.pem`/`<ca>.key`. */
  issue(name: string, cn: string, ca: string, isCa = false): void {
    this.ecKey(name);
    this.ossl('req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    fs.writeFileSync(this.file(`${name}.ext`), isCa ? 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n' : 'basicConstraints=CA:FALSE\n');
    this.ossl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out',
      `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  }

  /** `<name>-ec.key`: `<name>.key` as an "EC PRIVATE KEY" PEM (libcoap's GnuTLS build reads raw public keys so). */
  ecPrivateKeyPem(name: string): void {
    this.ossl('ec', '-in', `${name}.key`, '-out', `${name}-ec.key`);
  }

  /** The DER SubjectPublicKeyInfo of a key file. */
  readonly spki = (keyFile: string): Buffer => createPublicKey(this.read(keyFile)).export({ type: 'spki', format: 'der' });
}
