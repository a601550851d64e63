// The framing of a ReadFiles stream, checked the one way every reader
// checks it: the files come in the order asked for, each as start, chunks,
// end; an error stands in place of a file (or ends one mid-way); the stream
// ends after the last file. The reader keeps its own per-file state; this
// keeps the position and says what broke the rules (integrity_error).
import { CrowNestError } from "../../common/errors.js";

export function readFilesIntegrity(why: string): CrowNestError {
  return new CrowNestError("integrity_error", `the agent's ReadFiles stream ${why}`);
}

export class ReadFilesFraming {
  /** The index of the file the stream is at (files before it are done). */
  next = 0;
  private inFile = false;

  constructor(private readonly count: number) {}

  /** A file starts: the next one, with a header, and none open. */
  start<H>(index: number, header: H | undefined): H {
    if (this.inFile || index !== this.next || !header) throw readFilesIntegrity("started a file out of order");
    this.inFile = true;
    return header;
  }

  /** Bytes: only inside a file. */
  chunk(): void {
    if (!this.inFile) throw readFilesIntegrity("sent bytes outside a file");
  }

  /** The open file ends, with its trailer. Call done() once the reader has finished it. */
  end<T>(index: number, trailer: T | undefined): T {
    if (!this.inFile || index !== this.next || !trailer) throw readFilesIntegrity("ended a file it had not started");
    return trailer;
  }

  /** An error for the next file (open or not). Call done() once the reader has dealt with it. */
  error(index: number): void {
    if (index !== this.next) throw readFilesIntegrity("reported a file out of order");
  }

  /** The current file is finished (ended or failed): the stream moves on to the next. */
  done(): void {
    this.inFile = false;
    this.next++;
  }

  unknown(): never {
    throw readFilesIntegrity("sent an unknown event");
  }

  /** The stream ended: every file must have been finished. */
  finish(): void {
    if (this.inFile || this.next < this.count) throw readFilesIntegrity("ended before every file");
  }
}
