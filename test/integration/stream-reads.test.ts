import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { sequencesOnSubject } from '../../src/transport/stream-reads.js';
import { connectTest, startTestNatsServer } from '../helpers/nats-server.js';

/**
 * The stream sequences of one partition among all of them, read without a
 * consumer (STREAM.MSG.GET next_by_subj on nats-server 2.9): what a partition
 * consumer's Ingest awaits after deliveries were lost.
 */
describe('sequencesOnSubject', () => {
  it('lists the sequences of a range whose subject matches a wildcard filter, and nothing past the range', async () => {
    const server = await startTestNatsServer();
    const nc = await connectTest(server.url);
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'TXP', subjects: ['loyalty.txp.*.*'] });
      const js = jetstream(nc);
      const ofPartition3: number[] = [];
      for (let index = 0; index < 40; index++) {
        const partition = index % 4 === 0 || index % 7 === 0 ? 3 : index % 3;
        const ack = await js.publish(`loyalty.txp.${partition}.m-${index}`, new Uint8Array(1));
        if (partition === 3) ofPartition3.push(ack.seq);
      }
      expect(await sequencesOnSubject(jsm, 'TXP', 'loyalty.txp.3.*', 1, 40)).toEqual(ofPartition3);
      expect(await sequencesOnSubject(jsm, 'TXP', 'loyalty.txp.3.*', 10, 20)).toEqual(ofPartition3.filter((seq) => seq >= 10 && seq <= 20));
      expect(await sequencesOnSubject(jsm, 'TXP', 'loyalty.txp.9.*', 1, 40)).toEqual([]);
      expect(await sequencesOnSubject(jsm, 'TXP', 'loyalty.txp.3.*', 41, 60)).toEqual([]);
    } finally {
      await nc.close();
      await server.stop();
    }
  });
});
