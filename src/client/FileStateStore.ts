// Node-only ChannelStateStore: one JSON file, replaced atomically (write to a temp file, rename).
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { decodeState, encodeState, type ChannelState, type ChannelStateStore } from "./stateStore.js";

export class FileStateStore implements ChannelStateStore {
  private cache: Record<string, ReturnType<typeof encodeState>> | undefined;

  constructor(private readonly path: string) {}

  async load(channelId: string) {
    const entry = (await this.all())[channelId];
    return entry && decodeState(entry);
  }

  async save(channelId: string, state: ChannelState) {
    const all = await this.all();
    all[channelId] = encodeState(state);
    await mkdir(dirname(this.path), { recursive: true });
    const temp = `${this.path}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify(all, null, 2));
    await rename(temp, this.path);
  }

  private async all() {
    if (!this.cache) {
      try {
        this.cache = JSON.parse(await readFile(this.path, "utf8"));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
        this.cache = {};
      }
    }
    return this.cache!;
  }
}
